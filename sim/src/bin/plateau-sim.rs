//! `plateau-sim`: the simulator's command line on its own (the same as `plateau sim`), for
//! measurements and CI without building the whole `plateau` binary.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `plateau-sim sim --seed 1` and `plateau-sim --seed 1` both work, so the determinism
    // check's child processes (`<exe> sim ...`) reach the same entry point.
    let args = match args.first().map(String::as_str) {
        Some("sim") => args[1..].to_vec(),
        _ => args,
    };
    std::process::exit(plateau_sim::cli_main(&args));
}

/// mimalloc: allocation-heavy simulations run markedly faster than on glibc malloc.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
