//! weir: Kafka to partitioned Parquet on object storage, reshaped with SQL.

// See `weir::memory`: C code allocates through it too, and freed pages go back on demand.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    weir::cli::main()
}
