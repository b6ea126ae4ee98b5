//! Machine learning with libtorch (tch): built-in architectures, model files, the training
//! loop and evaluation. Everything here is synchronous and runs on blocking threads.

pub mod arch;
pub mod history;
pub mod model;
pub mod modelfile;
pub mod optim;
pub mod step;
pub mod train;

#[cfg(test)]
mod modelfile_tests;
#[cfg(test)]
mod tests;
