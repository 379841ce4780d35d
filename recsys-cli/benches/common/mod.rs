//! What the benchmarks of this package share.

/// The value after `--name` on the command line, parsed, or `default`; a value that does not
/// parse stops the benchmark naming the flag.
pub fn arg<T: std::str::FromStr>(name: &str, default: T) -> T {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().unwrap_or_else(|_| panic!("{name}: bad value {v}")))
        .unwrap_or(default)
}
