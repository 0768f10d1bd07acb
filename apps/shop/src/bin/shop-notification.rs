//! `shop-notification`: the notification service alone, what `shop serve notification` hands over to (see `shop::serve`).

fn main() -> std::process::ExitCode {
    shop::serve::main::<shop::serve::Notification>()
}
