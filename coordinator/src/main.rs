//! The `diffprobe` binary: everything lives in the `coordinator` library; `main` only runs it.

fn main() -> std::process::ExitCode {
    coordinator::main_with_args()
}
