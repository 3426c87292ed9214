//! healthetl: healthcare billing CSVs into a typed star schema, streaming, validated and loaded idempotently.
//!
//! The modules follow the path an object takes: [`route`] (which table) → [`source`] (bytes, decompressed and
//! decoded) → [`transform`] (validated and cast rows) → [`warehouse`] (staging, COPY, merge, ledger), wired for
//! one object by [`pipeline`].

#![deny(missing_docs)]

#[cfg(feature = "cli")]
pub mod acceptance;
pub mod aws;
pub mod calendar;
#[cfg(feature = "cli")]
pub mod cli;
pub mod config;
pub mod custom_resource;
#[cfg(feature = "dashboard")]
pub mod dashboard;
pub mod event;
#[cfg(feature = "generate")]
pub mod generate;
pub mod handler;
#[cfg(feature = "cli")]
pub mod history;
#[cfg(feature = "ingest")]
pub mod ingest;
pub mod lambda;
pub mod pipeline;
pub mod reconcile;
#[cfg(feature = "cli")]
pub mod replay;
pub mod reporting;
pub mod route;
pub mod schema;
pub mod source;
pub mod transform;
pub mod warehouse;
#[cfg(feature = "worker")]
pub mod worker;
