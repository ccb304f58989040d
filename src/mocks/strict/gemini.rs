//! Gemini on Google AI Studio (the Generative Language API). Google's front
//! end checks the API key first (`x-goog-api-key`, or `key=` in the query),
//! then the model, then the body as the service parses it: a protobuf
//! message read from JSON, so a member it does not define is a 400 naming
//! it (`Invalid JSON payload received. Unknown name "x" at 'generation_config':
//! Cannot find field.`, every one at once, the field path in proto's
//! snake_case), and both spellings of a field (`systemInstruction`,
//! `system_instruction`) are accepted. Then the request's own rules: two
//! roles, no empty turn or part, a function response right after the call
//! it answers, `generationConfig` in range. Error texts are Google's
//! (published error bodies; the API reference for the ranges).

use serde_json::{Map, Value};

use super::super::errors;
use super::super::journal::RecordedRequest;
use super::super::route::Route;
use super::super::wire::Buffered;
use super::parse_object;

const UNREGISTERED: &str = "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.";

const INVALID_CREDENTIALS: &str = "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.";

/// The model families the mock serves; another name is the API's 404.
const MODEL_PREFIXES: &[&str] = &["gemini-", "gemma-", "learnlm-"];

/// A message type of the request, for the unknown-member check: its fields
/// (camelCase) and what each holds.
#[derive(Clone, Copy)]
enum Msg {
    Request,
    Content,
    Part,
    Blob,
    FileData,
    FunctionCall,
    FunctionResponse,
    Tool,
    FunctionDeclaration,
    ToolConfig,
    FunctionCallingConfig,
    SafetySetting,
    GenerationConfig,
    ThinkingConfig,
}

/// What a field holds: a message, a list of messages, or anything else
/// (scalars, enums, `Struct`s and schemas, which are not walked).
#[derive(Clone, Copy)]
enum Field {
    One(Msg),
    Many(Msg),
    Leaf,
}

fn fields(m: Msg) -> &'static [(&'static str, Field)] {
    use Field::*;
    match m {
        Msg::Request => &[
            ("model", Leaf),
            ("contents", Many(Msg::Content)),
            ("tools", Many(Msg::Tool)),
            ("toolConfig", One(Msg::ToolConfig)),
            ("safetySettings", Many(Msg::SafetySetting)),
            ("systemInstruction", One(Msg::Content)),
            ("generationConfig", One(Msg::GenerationConfig)),
            ("cachedContent", Leaf),
        ],
        Msg::Content => &[("role", Leaf), ("parts", Many(Msg::Part))],
        Msg::Part => &[
            ("text", Leaf),
            ("inlineData", One(Msg::Blob)),
            ("functionCall", One(Msg::FunctionCall)),
            ("functionResponse", One(Msg::FunctionResponse)),
            ("fileData", One(Msg::FileData)),
            ("executableCode", Leaf),
            ("codeExecutionResult", Leaf),
            ("thought", Leaf),
            ("thoughtSignature", Leaf),
            ("videoMetadata", Leaf),
            ("partMetadata", Leaf),
        ],
        Msg::Blob => &[("mimeType", Leaf), ("data", Leaf)],
        Msg::FileData => &[("mimeType", Leaf), ("fileUri", Leaf)],
        Msg::FunctionCall => &[("id", Leaf), ("name", Leaf), ("args", Leaf)],
        Msg::FunctionResponse => {
            &[("id", Leaf), ("name", Leaf), ("response", Leaf), ("willContinue", Leaf), ("scheduling", Leaf)]
        }
        Msg::Tool => &[
            ("functionDeclarations", Many(Msg::FunctionDeclaration)),
            ("googleSearchRetrieval", Leaf),
            ("codeExecution", Leaf),
            ("googleSearch", Leaf),
            ("urlContext", Leaf),
            ("computerUse", Leaf),
            ("fileSearch", Leaf),
            ("googleMaps", Leaf),
        ],
        Msg::FunctionDeclaration => &[
            ("name", Leaf),
            ("description", Leaf),
            ("parameters", Leaf),
            ("parametersJsonSchema", Leaf),
            ("response", Leaf),
            ("responseJsonSchema", Leaf),
            ("behavior", Leaf),
        ],
        Msg::ToolConfig => &[("functionCallingConfig", One(Msg::FunctionCallingConfig)), ("retrievalConfig", Leaf)],
        Msg::FunctionCallingConfig => &[("mode", Leaf), ("allowedFunctionNames", Leaf)],
        Msg::SafetySetting => &[("category", Leaf), ("threshold", Leaf)],
        Msg::GenerationConfig => &[
            ("stopSequences", Leaf),
            ("responseMimeType", Leaf),
            ("responseSchema", Leaf),
            ("responseJsonSchema", Leaf),
            ("responseModalities", Leaf),
            ("candidateCount", Leaf),
            ("maxOutputTokens", Leaf),
            ("temperature", Leaf),
            ("topP", Leaf),
            ("topK", Leaf),
            ("seed", Leaf),
            ("presencePenalty", Leaf),
            ("frequencyPenalty", Leaf),
            ("responseLogprobs", Leaf),
            ("logprobs", Leaf),
            ("enableEnhancedCivicAnswers", Leaf),
            ("speechConfig", Leaf),
            ("thinkingConfig", One(Msg::ThinkingConfig)),
            ("mediaResolution", Leaf),
            ("imageConfig", Leaf),
        ],
        Msg::ThinkingConfig => &[("includeThoughts", Leaf), ("thinkingBudget", Leaf), ("thinkingLevel", Leaf)],
    }
}

/// `generationConfig` → `generation_config`: how proto names a field.
fn snake(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 4);
    for c in camel.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// The field `key` names in `m`, in either spelling.
fn field(m: Msg, key: &str) -> Option<(&'static str, Field)> {
    fields(m).iter().copied().find(|(name, _)| *name == key || snake(name) == key)
}

/// Every member the service would not recognise, as its messages say them.
fn unknown_members(obj: &Map<String, Value>, m: Msg, at: &str, out: &mut Vec<String>) {
    for (key, v) in obj {
        let Some((name, kind)) = field(m, key) else {
            let place = if at.is_empty() { String::new() } else { format!(" at '{at}'") };
            out.push(format!("Invalid JSON payload received. Unknown name \"{key}\"{place}: Cannot find field."));
            continue;
        };
        let path = if at.is_empty() { snake(name) } else { format!("{at}.{}", snake(name)) };
        match (kind, v) {
            (Field::One(child), Value::Object(o)) => unknown_members(o, child, &path, out),
            (Field::Many(child), Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    if let Some(o) = item.as_object() {
                        unknown_members(o, child, &format!("{path}[{i}]"), out);
                    }
                }
            }
            _ => {}
        }
    }
}

/// A member in either spelling.
fn get<'a>(obj: &'a Map<String, Value>, camel: &str) -> Option<&'a Value> {
    obj.get(camel).or_else(|| obj.get(&snake(camel))).filter(|v| !v.is_null())
}

/// The parts of a content that carry a function call or response, by name.
fn named<'a>(parts: &'a [Value], what: &str) -> Vec<&'a str> {
    parts
        .iter()
        .filter_map(|p| p.as_object().and_then(|p| get(p, what)))
        .map(|f| f.get("name").and_then(Value::as_str).unwrap_or(""))
        .collect()
}

/// Gemini 3 models think before they call a function and sign the
/// thought: in the current turn (since the last user text), each step's
/// first function call must come back with its `thoughtSignature` (Google's
/// "Thought signatures" guide), else the request is refused.
fn missing_signature(model: &str, obj: &Map<String, Value>) -> Option<String> {
    if !model.starts_with("gemini-3") {
        return None;
    }
    let contents = get(obj, "contents")?.as_array()?;
    let user_text = |c: &Value| {
        let parts = c.as_object().and_then(|c| get(c, "parts")).and_then(Value::as_array);
        let role = c.as_object().and_then(|c| get(c, "role")).and_then(Value::as_str).unwrap_or("user");
        role == "user" && parts.is_some_and(|p| p.iter().any(|p| p.get("text").is_some()))
    };
    let start = contents.iter().rposition(user_text).map_or(0, |i| i + 1);
    for (i, c) in contents.iter().enumerate().skip(start) {
        let parts = c.as_object().and_then(|c| get(c, "parts")).and_then(Value::as_array);
        let first_call =
            parts.into_iter().flatten().filter_map(Value::as_object).find(|p| get(p, "functionCall").is_some());
        if let Some(p) = first_call.filter(|p| get(p, "thoughtSignature").is_none()) {
            let name = get(p, "functionCall").and_then(|f| f.get("name")).and_then(Value::as_str).unwrap_or("");
            return Some(format!(
                "Function call is missing a thought_signature in functionCall parts. This is required for tools to work correctly, and missing thought_signature may lead to degraded model performance. Additional data, function call `default_api:{name}` , position {}. Please refer to https://ai.google.dev/gemini-api/docs/thought-signatures for more details.",
                i + 1
            ));
        }
    }
    None
}

/// The request's own rules, after it parsed: the first broken one.
fn request_problem(obj: &Map<String, Value>) -> Option<String> {
    if let Some(c) = get(obj, "contents").filter(|c| !c.is_array()) {
        return Some(format!(
            "Invalid value at 'contents' (type.googleapis.com/google.ai.generativelanguage.v1beta.Content), {c}"
        ));
    }
    let contents = get(obj, "contents").and_then(Value::as_array).filter(|c| !c.is_empty());
    let Some(contents) = contents else {
        return Some("* GenerateContentRequest.contents: contents is not specified\n".into());
    };
    let empty = Vec::new();
    let mut previous: Option<(&str, &Vec<Value>)> = None;
    for (i, c) in contents.iter().enumerate() {
        let Some(c) = c.as_object() else {
            return Some(format!(
                "Invalid value at 'contents[{i}]' (type.googleapis.com/google.ai.generativelanguage.v1beta.Content), {c}"
            ));
        };
        let role = get(c, "role").and_then(Value::as_str).unwrap_or("user");
        if !matches!(role, "user" | "model") {
            return Some("Please use a valid role: user, model.".into());
        }
        if let Some(p) = get(c, "parts").filter(|p| !p.is_array()) {
            return Some(format!("Invalid value at 'contents[{i}].parts' (type.googleapis.com/google.ai.generativelanguage.v1beta.Part), {p}"));
        }
        let parts = get(c, "parts").and_then(Value::as_array).unwrap_or(&empty);
        if parts.is_empty() {
            return Some(format!("* GenerateContentRequest.contents[{i}].parts: contents.parts must not be empty.\n"));
        }
        for (j, p) in parts.iter().enumerate() {
            let Some(p) = p.as_object() else {
                return Some(format!(
                    "Invalid value at 'contents[{i}].parts[{j}]' (type.googleapis.com/google.ai.generativelanguage.v1beta.Part), {p}"
                ));
            };
            let data = [
                "text",
                "inlineData",
                "functionCall",
                "functionResponse",
                "fileData",
                "executableCode",
                "codeExecutionResult",
            ];
            if !data.iter().any(|d| get(p, d).is_some()) {
                return Some(format!(
                    "* GenerateContentRequest.contents[{i}].parts[{j}].data: required oneof field 'data' must have one initialized field\n"
                ));
            }
        }
        let (calls, responses) = (named(parts, "functionCall"), named(parts, "functionResponse"));
        if !calls.is_empty() {
            let after = match previous {
                None => false,
                Some(("user", _)) => true,
                Some((_, prev)) => !named(prev, "functionResponse").is_empty(),
            };
            if role != "model" || !after {
                return Some("Please ensure that function call turn comes immediately after a user turn or after a function response turn.".into());
            }
        }
        if !responses.is_empty() {
            let called = match previous {
                Some(("model", prev)) => named(prev, "functionCall"),
                _ => Vec::new(),
            };
            if called.is_empty() || responses.iter().any(|r| !called.contains(r)) {
                return Some(
                    "Please ensure that function response turn comes immediately after a function call turn.".into(),
                );
            }
            if called.len() != responses.len() {
                return Some("Please ensure that the number of function response parts is equal to the number of function call parts of the function call turn.".into());
            }
        }
        previous = Some((role, parts));
    }
    if let Some(tools) = get(obj, "tools").and_then(Value::as_array) {
        for (i, t) in tools.iter().enumerate() {
            let decls = t.as_object().and_then(|t| get(t, "functionDeclarations")).and_then(Value::as_array);
            for (j, d) in decls.into_iter().flatten().enumerate() {
                let Some(d) = d.as_object() else { continue };
                let at = format!("* GenerateContentRequest.tools[{i}].function_declarations[{j}]");
                if get(d, "name").and_then(Value::as_str).is_none_or(str::is_empty) {
                    return Some(format!("{at}.name: Invalid function name. Must start with a letter or an underscore. Must be alphameric (a-z, A-Z, 0-9), underscores (_), dots (.), colons (:), or dashes (-), with a maximum length of 64.\n"));
                }
                if get(d, "parameters").is_some() && get(d, "parametersJsonSchema").is_some() {
                    return Some(format!("{at}: parameters and parameters_json_schema are mutually exclusive.\n"));
                }
            }
        }
    }
    if let Some(fc) = get(obj, "toolConfig").and_then(|t| t.as_object()).and_then(|t| get(t, "functionCallingConfig")) {
        let fc = fc.as_object()?;
        let mode = get(fc, "mode").and_then(Value::as_str).unwrap_or("MODE_UNSPECIFIED");
        if !matches!(mode, "MODE_UNSPECIFIED" | "AUTO" | "ANY" | "NONE" | "VALIDATED") {
            return Some(format!(
                "Invalid value at 'tool_config.function_calling_config.mode' (type.googleapis.com/google.ai.generativelanguage.v1beta.FunctionCallingConfig.Mode), \"{mode}\""
            ));
        }
        if get(fc, "allowedFunctionNames").is_some() && !matches!(mode, "ANY" | "VALIDATED") {
            return Some("* GenerateContentRequest.tool_config.function_calling_config.allowed_function_names: allowed_function_names should only be set when the Mode is ANY or VALIDATED.\n".into());
        }
    }
    let config = get(obj, "generationConfig").and_then(Value::as_object)?;
    // (field, lowest, highest): the API reference's ranges.
    let ranges: &[(&str, f64, f64)] = &[
        ("temperature", 0.0, 2.0),
        ("topP", 0.0, 1.0),
        ("candidateCount", 1.0, 8.0),
        ("maxOutputTokens", 1.0, f64::MAX),
        ("presencePenalty", -2.0, 2.0),
        ("frequencyPenalty", -2.0, 2.0),
        ("topK", 1.0, f64::MAX),
    ];
    for (name, lo, hi) in ranges {
        let Some(v) = get(config, name) else { continue };
        let f = snake(name);
        let Some(x) = v.as_f64() else {
            return Some(format!("Invalid value at 'generation_config.{f}' (TYPE_FLOAT), {v}"));
        };
        if x < *lo || x > *hi {
            let hi = if *hi == f64::MAX { "inf".to_string() } else { hi.to_string() };
            return Some(format!(
                "* GenerateContentRequest.generation_config.{f}: {f} must be in the range [{lo}, {hi}], got {x}\n"
            ));
        }
    }
    if let Some(stops) = get(config, "stopSequences") {
        if stops.as_array().is_none_or(|a| a.len() > 5 || !a.iter().all(Value::is_string)) {
            return Some(
                "* GenerateContentRequest.generation_config.stop_sequences: at most 5 stop sequences, each a string\n"
                    .into(),
            );
        }
    }
    None
}

pub(super) fn check(req: &RecordedRequest, route: &Route) -> Option<Buffered> {
    let key_in_query = req
        .query
        .as_deref()
        .is_some_and(|q| q.split('&').any(|p| p.strip_prefix("key=").is_some_and(|k| !k.is_empty())));
    if !super::non_empty_header(req, "x-goog-api-key") && !key_in_query {
        // An API key sent as a bearer token is read as an OAuth token, and
        // is not one.
        if super::has_bearer(req) {
            return Some(errors::google(401, INVALID_CREDENTIALS, "UNAUTHENTICATED"));
        }
        return Some(errors::google(403, UNREGISTERED, "PERMISSION_DENIED"));
    }
    let Route::GeminiGenerate { model, .. } = route else { return None };
    if !MODEL_PREFIXES.iter().any(|p| model.starts_with(p)) {
        return Some(errors::google(
            404,
            &format!("models/{model} is not found for API version v1beta, or is not supported for generateContent. Call ListModels to see the list of available models and their supported methods."),
            "NOT_FOUND",
        ));
    }
    let obj = match parse_object(req) {
        Ok(Some(obj)) => obj,
        Ok(None) => {
            return Some(errors::gemini_invalid(
                "Invalid JSON payload received. Unknown name \"\": Root element must be a message.",
            ))
        }
        Err(e) => {
            return Some(errors::gemini_invalid(&format!(
                "Invalid JSON payload received. {}",
                super::json_error_text(&req.body, &e)
            )))
        }
    };
    let mut unknown = Vec::new();
    unknown_members(obj, Msg::Request, "", &mut unknown);
    if !unknown.is_empty() {
        return Some(errors::gemini_invalid(&unknown.join("\n")));
    }
    request_problem(obj).or_else(|| missing_signature(model, obj)).map(|p| errors::google(400, &p, "INVALID_ARGUMENT"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn problem(body: Value) -> Option<String> {
        let mut unknown = Vec::new();
        let obj = body.as_object().unwrap();
        unknown_members(obj, Msg::Request, "", &mut unknown);
        if !unknown.is_empty() {
            return Some(unknown.join("\n"));
        }
        request_problem(obj)
    }

    #[test]
    fn members_it_does_not_define_are_named_with_their_proto_path() {
        let p = problem(json!({
            "contents": [{"role": "user", "parts": [{"text": "hi", "type": "text"}]}],
            "generation_config": {"max_tokens": 5},
            "messages": []
        }))
        .unwrap();
        assert_eq!(
            p,
            "Invalid JSON payload received. Unknown name \"type\" at 'contents[0].parts[0]': Cannot find field.\n\
             Invalid JSON payload received. Unknown name \"max_tokens\" at 'generation_config': Cannot find field.\n\
             Invalid JSON payload received. Unknown name \"messages\": Cannot find field."
        );
    }

    #[test]
    fn turns_parts_and_function_results_follow_the_apis_rules() {
        let ok = json!({
            "systemInstruction": {"parts": [{"text": "be brief"}]},
            "contents": [
                {"role": "user", "parts": [{"text": "weather?"}]},
                {"role": "model", "parts": [{"functionCall": {"name": "get", "args": {}}}]},
                {"role": "user", "parts": [{"functionResponse": {"name": "get", "response": {"content": "sunny"}}}]}
            ],
            "generationConfig": {"temperature": 2, "topP": 1, "candidateCount": 2}
        });
        assert_eq!(problem(ok), None);
        let cases = [
            (json!({"contents": []}), "contents is not specified"),
            (json!({"contents": [{"role": "assistant", "parts": [{"text": "x"}]}]}), "valid role"),
            (json!({"contents": [{"role": "user", "parts": []}]}), "must not be empty"),
            (json!({"contents": "hi"}), "Invalid value at 'contents'"),
            (json!({"contents": [{"role": "user", "parts": ["hi"]}]}), "Invalid value at 'contents[0].parts[0]'"),
            (json!({"contents": [{"role": "user", "parts": [{"thought": true}]}]}), "oneof field 'data'"),
            (
                json!({"contents": [{"role": "user", "parts": [{"text": "x"}]}, {"role": "user", "parts": [{"functionResponse": {"name": "get", "response": {}}}]}]}),
                "function response turn",
            ),
            (
                json!({"contents": [{"role": "model", "parts": [{"functionCall": {"name": "get"}}]}]}),
                "function call turn",
            ),
            (
                json!({"contents": [{"parts": [{"text": "x"}]}], "generationConfig": {"temperature": 2.5}}),
                "temperature must be in the range [0, 2]",
            ),
            (
                json!({"contents": [{"parts": [{"text": "x"}]}], "toolConfig": {"functionCallingConfig": {"mode": "AUTO", "allowedFunctionNames": ["f"]}}}),
                "allowed_function_names",
            ),
        ];
        for (body, needle) in cases {
            let p = problem(body.clone()).unwrap_or_default();
            assert!(p.contains(needle), "{body}: {p:?}");
        }
    }

    #[test]
    fn gemini_3_wants_the_current_turns_calls_signed() {
        let body = |sig: Option<&str>| {
            let mut call = json!({"functionCall": {"name": "get", "args": {}}});
            if let Some(s) = sig {
                call["thoughtSignature"] = json!(s);
            }
            json!({"contents": [
                {"role": "user", "parts": [{"text": "old question"}]},
                {"role": "model", "parts": [{"functionCall": {"name": "old", "args": {}}}]},
                {"role": "user", "parts": [{"functionResponse": {"name": "old", "response": {}}}, {"text": "new question"}]},
                {"role": "model", "parts": [call]},
                {"role": "user", "parts": [{"functionResponse": {"name": "get", "response": {}}}]}
            ]})
        };
        let unsigned = body(None);
        let p = missing_signature("gemini-3-pro-preview", unsigned.as_object().unwrap()).unwrap();
        assert!(p.contains("`default_api:get` , position 4"), "{p}");
        assert_eq!(missing_signature("gemini-2.5-flash", unsigned.as_object().unwrap()), None);
        // Earlier turns' calls need none (`old` is unsigned).
        assert_eq!(missing_signature("gemini-3-pro-preview", body(Some("c2ln")).as_object().unwrap()), None);
    }
}
