//! Test bed: a real local Kubernetes control plane for tests.
