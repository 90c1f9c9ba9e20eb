//! A thin client for Slipway's HTTP API: bearer auth, JSON in and out, and API error bodies
//! turned into readable errors.

use crate::CliError;
use futures::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::Value;

pub struct ApiClient {
    http: reqwest::Client,
    base: url::Url,
    token: Option<String>,
}

impl ApiClient {
    pub fn new(base: &str, token: Option<String>) -> Result<Self, CliError> {
        let mut base = url::Url::parse(base)
            .map_err(|e| CliError::Usage(format!("invalid --api-url {base:?}: {e}")))?;
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        let http = reqwest::Client::builder()
            .user_agent(concat!("slipway-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| CliError::Http(e.to_string()))?;
        Ok(ApiClient { http, base, token })
    }

    fn url(&self, path: &str) -> Result<url::Url, CliError> {
        self.base
            .join(path.trim_start_matches('/'))
            .map_err(|e| CliError::Usage(format!("bad path {path:?}: {e}")))
    }

    fn request(&self, method: Method, path: &str) -> Result<reqwest::RequestBuilder, CliError> {
        let mut req = self.http.request(method, self.url(path)?);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        Ok(req)
    }

    /// Send a request and decode the JSON answer, or the API's error.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, String)],
    ) -> Result<(StatusCode, Value), CliError> {
        let mut req = self.request(method, path)?;
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(|e| self.unreachable(e))?;
        let status = resp.status();
        let text = resp
            .text()
            .await
            .map_err(|e| CliError::Http(e.to_string()))?;
        let value: Value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        if status.is_success() {
            Ok((status, value))
        } else {
            Err(api_error(status, &value))
        }
    }

    pub async fn get(&self, path: &str) -> Result<Value, CliError> {
        Ok(self.call(Method::GET, path, None, &[]).await?.1)
    }

    pub async fn post(&self, path: &str, body: Option<&Value>) -> Result<Value, CliError> {
        Ok(self.call(Method::POST, path, body, &[]).await?.1)
    }

    pub async fn put(&self, path: &str, body: &Value) -> Result<Value, CliError> {
        Ok(self.call(Method::PUT, path, Some(body), &[]).await?.1)
    }

    /// Follow a Server-Sent Events stream, calling `on_event` with each event's type (`None`
    /// for plain messages) and data.
    pub async fn sse(
        &self,
        path: &str,
        mut on_event: impl FnMut(Option<&str>, &str) -> Result<(), CliError>,
    ) -> Result<(), CliError> {
        let resp = self
            .request(Method::GET, path)?
            .header("Accept", "text/event-stream")
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        let status = resp.status();
        if !status.is_success() {
            let text = resp.text().await.unwrap_or_default();
            let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
            return Err(api_error(status, &value));
        }
        let mut stream = resp.bytes_stream();
        let mut buf: Vec<u8> = Vec::new();
        let mut data = String::new();
        let mut event: Option<String> = None;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| CliError::Http(e.to_string()))?;
            buf.extend_from_slice(&chunk);
            while let Some(nl) = buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = buf.drain(..=nl).collect();
                let line = String::from_utf8_lossy(&line);
                let line = line.trim_end_matches(['\n', '\r']);
                if line.is_empty() {
                    // A blank line ends an event.
                    if !data.is_empty() {
                        on_event(event.as_deref(), &data)?;
                        data.clear();
                    }
                    event = None;
                } else if let Some(e) = line.strip_prefix("event:") {
                    event = Some(e.trim().to_owned());
                } else if let Some(d) = line.strip_prefix("data:") {
                    if !data.is_empty() {
                        data.push('\n');
                    }
                    data.push_str(d.strip_prefix(' ').unwrap_or(d));
                }
            }
        }
        if !data.is_empty() {
            on_event(event.as_deref(), &data)?;
        }
        Ok(())
    }

    fn unreachable(&self, e: reqwest::Error) -> CliError {
        CliError::Http(format!("cannot reach the API at {}: {e}", self.base))
    }
}

fn api_error(status: StatusCode, body: &Value) -> CliError {
    let err = &body["error"];
    let message = err["message"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| match body {
            Value::String(s) if !s.is_empty() => s.clone(),
            _ => status.canonical_reason().unwrap_or("error").to_owned(),
        });
    CliError::Api {
        status: status.as_u16(),
        code: err["code"].as_str().unwrap_or("error").to_owned(),
        message,
        field: err["field"].as_str().map(str::to_owned),
    }
}
