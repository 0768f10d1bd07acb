//! `shop-mobile`: the mobile service alone, what `shop serve mobile` hands over to (see `shop::serve`).

fn main() -> std::process::ExitCode {
    shop::serve::main::<shop::serve::Mobile>()
}
