//! healthetl: healthcare billing CSVs into a typed star schema, streaming, validated and loaded idempotently.
//!
//! The modules follow the path an object takes: [`route`] (which table) → [`source`] (bytes, decompressed and
//! decoded) → [`transform`] (validated and cast rows) → [`warehouse`] (staging, COPY, merge, ledger), wired for
//! one object by [`pipeline`].

pub mod aws;
pub mod cli;
pub mod config;
pub mod dashboard;
pub mod event;
pub mod generate;
pub mod handler;
pub mod ingest;
pub mod pipeline;
pub mod reporting;
pub mod route;
pub mod schema;
pub mod source;
pub mod transform;
pub mod warehouse;
pub mod worker;
