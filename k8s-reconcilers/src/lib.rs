//! CRD types and the four reconcilers of the runner scale set controller.

pub mod crd;
pub mod names;
