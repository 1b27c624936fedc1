//! AFL++ entry point of the `rpc_client` target (see fuzz/README.md).

fn main() {
    afl::fuzz!(|data: &[u8]| ggjh_fuzz::rpc_client::check(data));
}
