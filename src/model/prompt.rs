//! The model's text methods, next to [`Model`] (above `text`, which knows no `Model`): its chat
//! template rendered, and a user's prompt as the model is fed it: the checkpoint's chat template
//! (one user turn, the generation prompt added) when asked for and present, then the tokenizer
//! without extra special tokens (templates write BOS themselves).

use crate::model::error::{ModelError, Result};
use crate::model::text::chat::ChatTemplate;
use crate::model::Model;

impl Model {
    /// Renders the model's chat template (HF semantics) for `(role, content)` messages.
    /// Templates usually write BOS themselves: encode the result with `add_special_tokens = false`.
    pub fn apply_chat_template(
        &self,
        messages: &[(&str, &str)],
        add_generation_prompt: bool,
    ) -> Result<String> {
        let source = self.chat_template.as_deref().ok_or_else(|| {
            ModelError::ChatTemplate(format!("{} has no chat template", self.source))
        })?;
        let tpl = ChatTemplate::new(source, &self.tokenizer)?;
        tpl.render(messages, add_generation_prompt)
    }

    pub fn encode_prompt(&self, text: &str, chat: bool) -> Result<Vec<u32>> {
        let rendered = if chat && self.chat_template.is_some() {
            self.apply_chat_template(&[("user", text)], true)?
        } else {
            text.to_string()
        };
        self.tokenizer.encode(&rendered, false)
    }
}
