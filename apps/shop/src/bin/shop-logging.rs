//! `shop-logging`: the logging service alone, what `shop serve logging` hands over to (see `shop::serve`).

fn main() -> std::process::ExitCode {
    shop::serve::main::<shop::serve::Logging>()
}
