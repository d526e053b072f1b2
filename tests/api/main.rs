//! Black-box HTTP tests: one binary (one link step) with a module per endpoint family.
//! Every test runs on SQLite and on PostgreSQL through the `both!` macro.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod conventions;
mod isolation;
mod kaizala;
mod kaizala_webhooks;
mod ms_courses;
mod ms_groups;
mod ms_import;
mod ms_members;
mod ms_properties;
mod openapi_filters;
mod outbox;
mod robustness;
mod security;
mod vocab_messages;
mod webhooks;
