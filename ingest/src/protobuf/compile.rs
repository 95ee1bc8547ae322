//! A registered Protobuf schema, and the schemas it imports, as descriptors.
//!
//! A registry hands a Protobuf schema over as `.proto` source (Confluent's default) or as a
//! base64 `FileDescriptorProto` (what some clients register, and what registries serve with
//! `?format=serialized`); both are accepted. Imports are found through the schema's
//! references (each a subject version, fetched in turn) and, for the well-known types
//! (`google/protobuf/timestamp.proto`...), built in. Source is compiled by protox.

use std::collections::HashMap;

use base64::Engine;
use prost::Message;
use prost_reflect::FileDescriptor;
use protox::file::{ChainFileResolver, File, FileResolver, GoogleFileResolver};

use crate::registry::{FetchSchema, RegisteredSchema, RegistryError};

/// Referenced schemas followed at most: a chain this long is a cycle or a mistake.
const MAX_REFERENCES: usize = 1000;

/// `schema` and everything it imports as one file descriptor: `Ok(Err(why))` if the schema
/// is not valid Protobuf or a reference is missing, `Err` if the registry did not answer.
pub(super) fn compile(
    schema: &RegisteredSchema,
    fetch: &dyn FetchSchema,
) -> Result<Result<FileDescriptor, String>, RegistryError> {
    let root = format!("schema-registry/id-{}.proto", schema.id);
    let mut files = HashMap::new();
    match parse(&root, &schema.schema) {
        Ok(file) => files.insert(root.clone(), file),
        Err(why) => return Ok(Err(why)),
    };
    let mut pending = schema.references.clone();
    while let Some(reference) = pending.pop() {
        if files.contains_key(&reference.name) {
            continue;
        }
        if files.len() > MAX_REFERENCES {
            return Ok(Err(format!(
                "it refers to more than {MAX_REFERENCES} schemas"
            )));
        }
        let imported = match fetch.fetch_version(&reference.subject, reference.version) {
            Ok(imported) => imported,
            Err(RegistryError::NotFound { code, message, .. }) => {
                return Ok(Err(format!(
                    "its import `{}` (subject `{}` version {}) is not in the registry (error \
                     {code}: {message})",
                    reference.name, reference.subject, reference.version
                )));
            }
            Err(other) => return Err(other),
        };
        match parse(&reference.name, &imported.schema) {
            Ok(file) => files.insert(reference.name.clone(), file),
            Err(why) => return Ok(Err(format!("its import `{}`: {why}", reference.name))),
        };
        pending.extend(imported.references);
    }
    let mut resolver = ChainFileResolver::new();
    resolver.add(Registered(files));
    resolver.add(GoogleFileResolver::new());
    let mut compiler = protox::Compiler::with_file_resolver(resolver);
    compiler.include_imports(true);
    if let Err(e) = compiler.open_file(&root) {
        return Ok(Err(e.to_string()));
    }
    let pool = compiler.descriptor_pool();
    Ok(Ok(pool
        .get_file_by_name(&root)
        .expect("the compiler holds the file it opened")))
}

/// A schema's text: a base64 `FileDescriptorProto`, else `.proto` source.
fn parse(name: &str, text: &str) -> Result<File, String> {
    let descriptor = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .ok()
        .and_then(|bytes| prost_types::FileDescriptorProto::decode(bytes.as_slice()).ok());
    match descriptor {
        Some(mut descriptor) => {
            // Imports name files as the references do; the descriptor's own name may differ.
            descriptor.name = Some(name.to_owned());
            Ok(File::from_file_descriptor_proto(descriptor))
        }
        None => File::from_source(name, text).map_err(|e| e.to_string()),
    }
}

/// The files fetched from the registry, by the names imports use.
struct Registered(HashMap<String, File>);

impl FileResolver for Registered {
    fn open_file(&self, name: &str) -> Result<File, protox::Error> {
        self.0
            .get(name)
            .cloned()
            .ok_or_else(|| protox::Error::file_not_found(name))
    }
}
