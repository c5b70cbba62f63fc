//! `plateau-supervise DIR`: the per-task supervisor the slave starts, as a small executable
//! (the same entry point as `plateau supervise`, without loading the whole of `plateau`).
fn main() {
    plateau_slave::containerizer::supervisor_main(std::env::args_os().skip(1).collect())
}
