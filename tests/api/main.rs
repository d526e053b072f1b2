//! Black-box HTTP tests: one binary (one link step) with a module per endpoint family.
//! Every test runs on SQLite and on PostgreSQL through the `both!` macro.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod backup;
mod common;
mod console;
mod console_jobs;
mod console_scale;
mod conventions;
mod emails;
mod events;
mod faults;
mod isolation;
mod kaizala;
mod kaizala_webhooks;
mod metrics;
mod migrations;
mod ms_courses;
mod ms_groups;
mod ms_import;
mod ms_members;
mod ms_properties;
mod openapi_filters;
mod outage;
mod outbox;
#[path = "../support/python.rs"]
mod python;
#[path = "../support/receiver.rs"]
mod receiver;
mod replicas;
mod robustness;
mod security;
mod transfer;
mod vocab_messages;
mod webhooks;
