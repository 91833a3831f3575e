//! A stateful emulator of GitHub's REST and Actions service APIs for tests and the demo.
