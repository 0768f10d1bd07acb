//! `shop-email`: the email service alone, what `shop serve email` hands over to (see `shop::serve`).

fn main() -> std::process::ExitCode {
    shop::serve::main::<shop::serve::Email>()
}
