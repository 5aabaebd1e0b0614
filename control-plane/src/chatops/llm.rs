//! The optional LLM provider: an OpenAI-compatible chat-completions endpoint that chooses one
//! of the chat's intents by tool calling (`sco_chat::llm` builds the request and checks the
//! call into an [`Intent`] through the same lexicon as typed words), and then phrases the
//! answer from the data that intent returned. It never runs anything itself: the intent it
//! chose goes through the asker's role and the usual services like a parsed one. Any
//! failure (timeout, HTTP error, a call that does not check) falls back to the deterministic
//! parser; a failed phrasing keeps the plain answer.

use std::time::Duration;

use serde_json::Value;

use sco_chat::{Intent, Lexicon};

/// Where and how to reach the provider.
#[derive(Clone)]
pub struct LlmClient {
    http: reqwest::Client,
    url: String,
    model: String,
    api_key: Option<String>,
}

impl std::fmt::Debug for LlmClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmClient")
            .field("url", &self.url)
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "(set)"))
            .finish()
    }
}

impl LlmClient {
    /// A client with `timeout` per request, trusting the certificates of the PEM bundle `ca`
    /// for https (None: http only; https requests then fail and the parser answers).
    pub fn new(
        url: String,
        model: String,
        api_key: Option<String>,
        timeout: Duration,
        ca: Option<&[u8]>,
    ) -> Result<Self, String> {
        let mut http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .tls_built_in_root_certs(false)
            // the key must reach only the configured URL
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy();
        if let Some(pem) = ca {
            for c in
                reqwest::Certificate::from_pem_bundle(pem).map_err(|e| format!("CA bundle: {e}"))?
            {
                http = http.add_root_certificate(c);
            }
        }
        let http = http.build().map_err(|e| e.to_string())?;
        Ok(Self {
            http,
            url,
            model,
            api_key,
        })
    }

    async fn post(&self, body: &Value) -> Result<Value, String> {
        let mut req = self.http.post(&self.url).json(body);
        if let Some(k) = &self.api_key {
            req = req.bearer_auth(k);
        }
        let resp = req.send().await.map_err(|e| {
            if e.is_timeout() {
                "timed out".to_string()
            } else {
                format!("request failed: {e}")
            }
        })?;
        let status = resp.status();
        if !status.is_success() {
            return Err(format!("HTTP {}", status.as_u16()));
        }
        // an answer is a few KiB; refuse to buffer a runaway one
        let bytes = resp.bytes().await.map_err(|e| format!("body: {e}"))?;
        if bytes.len() > 1024 * 1024 {
            return Err("answer over 1 MiB".into());
        }
        serde_json::from_slice(&bytes).map_err(|e| format!("not JSON: {e}"))
    }

    /// The intent the model chose for `text`, checked.
    pub async fn choose(&self, text: &str, lex: &Lexicon, now_ms: i64) -> Result<Intent, String> {
        let response = self
            .post(&sco_chat::llm::request_body(&self.model, text))
            .await?;
        sco_chat::llm::intent_from_response(&response, lex, now_ms).map_err(|e| e.to_string())
    }

    /// The answer phrased by the model from `data`, or None (the plain answer stays).
    pub async fn phrase(&self, text: &str, intent: &Intent, data: &Value) -> Option<String> {
        let body = sco_chat::llm::answer_request_body(&self.model, text, intent, data);
        match self.post(&body).await {
            Ok(r) => sco_chat::llm::answer_text(&r),
            Err(e) => {
                tracing::warn!(error = %e, "LLM provider could not phrase the answer; plain answer kept");
                None
            }
        }
    }
}
