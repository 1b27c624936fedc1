//! AFL++ entry point of the `frame` target (see fuzz/README.md).

fn main() {
    afl::fuzz!(|data: &[u8]| ggjh_fuzz::frame::check(data));
}
