#![allow(dead_code)]

pub mod nucache;
pub mod process;
pub mod upstream;
