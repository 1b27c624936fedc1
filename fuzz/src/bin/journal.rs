//! AFL++ entry point of the `journal` target (see fuzz/README.md).

fn main() {
    afl::fuzz!(|data: &[u8]| ggjh_fuzz::journal::check(data));
}
