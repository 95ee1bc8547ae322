//! weir: Kafka to partitioned Parquet on object storage, reshaped with SQL.
//!
//! The root crate wires the stage crates (`weir-ingest`, `weir-transform`, `weir-sink`, over
//! the contract in `weir-schemas`) into a service and its tools. It is a library, so that the
//! runtime can be tested in process; the `weir` binary is a thin shell over [`cli`].
//!
//! - [`config`] loads a pipeline file; [`pipeline`] builds the stages from it, touching
//!   nothing; [`runtime`] runs them (consumer sessions, rebalances, batches, checkpoints);
//!   [`telemetry`] tells the people who run it what happens.
//! - [`cli`] and the tools behind its commands: [`lag`], [`sample`] and [`golden`] (`weir sql
//!   run` and `weir sql test`), [`quickstart`], [`generate`], [`bench`].

pub mod bench;
pub mod cli;
mod commands;
pub mod config;
pub mod embedded_registry;
pub mod generate;
pub mod golden;
pub mod lag;
pub mod memory;
pub mod pipeline;
pub mod quickstart;
pub mod runtime;
pub mod sample;
pub mod telemetry;
