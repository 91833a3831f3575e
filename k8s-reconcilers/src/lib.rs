//! CRD types and the four reconcilers of the runner scale set controller.
