//! A user's prompt as the model is fed it: the checkpoint's chat template (one user turn, the
//! generation prompt added) when asked for and present, then the tokenizer without extra
//! special tokens (templates write BOS themselves).

use super::{Model, Result};

impl Model {
    pub fn encode_prompt(&self, text: &str, chat: bool) -> Result<Vec<u32>> {
        let rendered = if chat && self.chat_template.is_some() {
            self.apply_chat_template(&[("user", text)], true)?
        } else {
            text.to_string()
        };
        self.tokenizer.encode(&rendered, false)
    }
}
