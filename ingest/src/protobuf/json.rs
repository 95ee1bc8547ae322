//! JSON lines as framed Protobuf messages of the reader: how samples and golden tests are
//! written for Protobuf topics (the canonical JSON mapping: Timestamps as RFC 3339 text,
//! enums by name, 64-bit integers as numbers or text). Not on the consuming path.

use prost::Message;
use prost_reflect::{DynamicMessage, MessageDescriptor};

use super::MessagePath;

pub struct JsonToProtobuf {
    message: MessageDescriptor,
    framing: Vec<u8>,
}

impl JsonToProtobuf {
    /// Messages of `message`, framed as written with schema `id`.
    pub fn new(message: &MessageDescriptor, id: u32) -> Self {
        let mut framing = vec![0];
        framing.extend_from_slice(&id.to_be_bytes());
        MessagePath::of(message).encode(&mut framing);
        Self {
            message: message.clone(),
            framing,
        }
    }

    /// The framed message a JSON object line stands for; `Err` says why it does not fit.
    pub fn encode(&self, line: &str) -> Result<Vec<u8>, String> {
        let mut json = serde_json::Deserializer::from_str(line);
        let message = DynamicMessage::deserialize(self.message.clone(), &mut json)
            .and_then(|message| json.end().map(|()| message))
            .map_err(|e| format!("not a `{}` in JSON: {e}", self.message.full_name()))?;
        let mut payload = self.framing.clone();
        message
            .encode(&mut payload)
            .expect("a Vec grows to hold the message");
        Ok(payload)
    }
}
