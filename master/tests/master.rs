//! Integration tests of the master: one test binary for the crate.

mod master {
    mod bench_allocator;
    mod group;
    mod http_master;
    mod principal;
    mod sim_master;
}
