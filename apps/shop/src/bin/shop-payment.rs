//! `shop-payment`: the payment service alone, what `shop serve payment` hands over to (see `shop::serve`).

fn main() -> std::process::ExitCode {
    shop::serve::main::<shop::serve::Payment>()
}
