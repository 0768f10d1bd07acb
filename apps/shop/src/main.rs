//! `shop`: see the library (`src/lib.rs`).

fn main() -> std::process::ExitCode {
    shop::main()
}
