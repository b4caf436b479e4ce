//! Tests of the fake upstream itself (tests/common/upstream), one module
//! per subject.

#[path = "../common/mod.rs"]
mod common;

mod client;
mod documents;
mod faults;
mod http_behaviour;
mod private_feeds;
