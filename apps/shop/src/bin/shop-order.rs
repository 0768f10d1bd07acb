//! `shop-order`: the order service alone, what `shop serve order` hands over to (see `shop::serve`).

fn main() -> std::process::ExitCode {
    shop::serve::main::<shop::serve::Order>()
}
