//! weir: Kafka to partitioned Parquet on object storage, reshaped with SQL.

fn main() -> std::process::ExitCode {
    weir::cli::main()
}
