#![allow(dead_code)]

pub mod nucache;
pub mod upstream;
