//! LLM: placeholder
