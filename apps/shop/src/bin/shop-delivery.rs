//! `shop-delivery`: the delivery service alone, what `shop serve delivery` hands over to (see `shop::serve`).

fn main() -> std::process::ExitCode {
    shop::serve::main::<shop::serve::Delivery>()
}
