//! Slack: placeholder
