pub mod fake_actions;
