//! AFL++ entry point of the `ipc_session` target (see fuzz/README.md).

fn main() {
    afl::fuzz!(|data: &[u8]| ggjh_fuzz::ipc_session::check(data));
}
