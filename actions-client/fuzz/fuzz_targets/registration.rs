//! Decodes every input as each answer of the `registration` target (actions_client::fuzzing::TARGETS);
//! any violation of the oracle, or a panic, is a crash.
#![no_main]

use actions_client::fuzzing::{self, TARGETS};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for (target, answers) in TARGETS {
        if target == "registration" {
            for answer in answers {
                if let Err(problem) = fuzzing::run(*answer, data) {
                    panic!("{problem}");
                }
            }
        }
    }
});
