//! The CLIP tokenizer of a diffusers `tokenizer/` folder. Real SD repositories ship only the
//! slow-tokenizer files (`vocab.json`, `merges.txt`, `tokenizer_config.json`), so when there is no
//! `tokenizer.json` the fast tokenizer is assembled from them with the same pipeline transformers'
//! `CLIPTokenizerFast` uses (NFC, whitespace collapse, lowercase; CLIP's split regex; byte-level
//! BPE with `</w>`). Prompts are padded to `model_max_length` (77) with the configured pad token,
//! as the diffusers pipeline does; a longer prompt is an error, never silently truncated.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use tokenizers::Tokenizer;

use crate::error::UnitError;

const BOS: &str = "<|startoftext|>";
const EOS: &str = "<|endoftext|>";
const CLIP_SPLIT: &str =
    r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+";

/// A CLIP tokenizer with its padding rule.
pub(crate) struct ClipTokenizer {
    inner: Tokenizer,
    pad_id: u32,
    max_len: usize,
    dir: PathBuf,
}

/// Token ids of a batch, padded: `ids` is `n × max_len`; `lengths` counts real tokens
/// (start and end tokens included).
pub(crate) struct Encoded {
    pub(crate) ids: Vec<u32>,
    pub(crate) lengths: Vec<usize>,
}

fn err(path: &Path, e: impl std::fmt::Display) -> UnitError {
    UnitError::Model { path: path.display().to_string(), message: e.to_string() }
}

fn read_json(path: &Path) -> Result<Value, UnitError> {
    let text = std::fs::read_to_string(path).map_err(|e| err(path, e))?;
    serde_json::from_str(&text).map_err(|e| err(path, format!("not JSON: {e}")))
}

impl ClipTokenizer {
    /// Loads `dir/tokenizer.json`, or builds the tokenizer from `vocab.json` + `merges.txt`.
    pub(crate) fn load(dir: &Path) -> Result<ClipTokenizer, UnitError> {
        let fast = dir.join("tokenizer.json");
        let mut inner = if fast.exists() {
            Tokenizer::from_file(&fast).map_err(|e| err(&fast, e))?
        } else {
            let text = from_slow_files(dir)?.to_string();
            text.parse::<Tokenizer>().map_err(|e| err(&dir.join("vocab.json"), e))?
        };
        inner.with_padding(None);
        inner.with_truncation(None).map_err(|e| err(dir, e))?;
        let config_file = dir.join("tokenizer_config.json");
        let config = if config_file.exists() { read_json(&config_file)? } else { json!({}) };
        let pad = token_content(&config["pad_token"]).unwrap_or(EOS);
        let pad_id = inner
            .token_to_id(pad)
            .ok_or_else(|| err(&config_file, format!("pad_token {pad:?} is not in the vocab")))?;
        // Real configs carry model_max_length = 77; anything huge means "unset".
        let max_len =
            config["model_max_length"].as_u64().filter(|&n| n > 0 && n <= 4096).unwrap_or(77)
                as usize;
        Ok(ClipTokenizer { inner, pad_id, max_len, dir: dir.to_path_buf() })
    }

    /// The padded length (77 for SD).
    pub(crate) fn max_len(&self) -> usize {
        self.max_len
    }

    /// Tokenises and pads `texts`; `first` numbers the stimuli in errors.
    pub(crate) fn encode(&self, texts: &[String], first: usize) -> Result<Encoded, UnitError> {
        let encodings =
            self.inner.encode_batch(texts.to_vec(), true).map_err(|e| err(&self.dir, e))?;
        let mut ids = vec![self.pad_id; texts.len() * self.max_len];
        let mut lengths = Vec::with_capacity(texts.len());
        for (i, e) in encodings.iter().enumerate() {
            let got = e.get_ids();
            if got.len() > self.max_len {
                return Err(UnitError::Invalid(format!(
                    "stimulus {} ({:?}) has {} tokens, more than the text encoder's {}",
                    first + i,
                    texts[i],
                    got.len(),
                    self.max_len
                )));
            }
            ids[i * self.max_len..i * self.max_len + got.len()].copy_from_slice(got);
            lengths.push(got.len());
        }
        Ok(Encoded { ids, lengths })
    }
}

fn token_content(v: &Value) -> Option<&str> {
    v.as_str().or_else(|| v["content"].as_str())
}

/// The `tokenizer.json` that transformers writes for `CLIPTokenizerFast`, from the slow files.
fn from_slow_files(dir: &Path) -> Result<Value, UnitError> {
    let vocab_file = dir.join("vocab.json");
    let merges_file = dir.join("merges.txt");
    let vocab = read_json(&vocab_file)?;
    let id_of = |t: &str| {
        vocab[t].as_u64().ok_or_else(|| err(&vocab_file, format!("no {t} token in the vocab")))
    };
    let (bos, eos) = (id_of(BOS)?, id_of(EOS)?);
    let text = std::fs::read_to_string(&merges_file).map_err(|e| err(&merges_file, e))?;
    let merges: Vec<&str> =
        text.lines().filter(|l| !l.starts_with("#version") && !l.trim().is_empty()).collect();
    let special = |id: u64, content: &str| {
        json!({"id": id, "content": content, "single_word": false, "lstrip": false,
               "rstrip": false, "normalized": true, "special": true})
    };
    Ok(json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [special(bos, BOS), special(eos, EOS)],
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "NFC"},
            {"type": "Replace", "pattern": {"Regex": r"\s+"}, "content": " "},
            {"type": "Lowercase"}
        ]},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": CLIP_SPLIT}, "behavior": "Removed",
             "invert": true},
            {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true,
             "use_regex": false}
        ]},
        "post_processor": {"type": "RobertaProcessing", "sep": [EOS, eos], "cls": [BOS, bos],
                           "trim_offsets": false, "add_prefix_space": false},
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true,
                    "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": EOS,
                  "continuing_subword_prefix": "", "end_of_word_suffix": "</w>",
                  "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                  "vocab": vocab, "merges": merges}
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixtures() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
    }

    /// Ids from open_clip's own `SimpleTokenizer` (written by scripts/make-tiny-sd).
    #[test]
    fn slow_files_tokenize_like_open_clip() {
        let tok = ClipTokenizer::load(&fixtures().join("tiny-sd-1/tokenizer")).unwrap();
        let expected = read_json(&fixtures().join("tiny-sd-tokens.json")).unwrap();
        let cases = expected["ids"].as_object().unwrap();
        assert!(cases.len() >= 8);
        for (text, ids) in cases {
            let want: Vec<u32> =
                ids.as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
            let got = tok.encode(std::slice::from_ref(text), 0).unwrap();
            assert_eq!(&got.ids[..got.lengths[0]], &want[..], "{text:?}");
            assert!(got.ids[got.lengths[0]..tok.max_len()].iter().all(|&id| id == tok.pad_id));
        }
    }

    #[test]
    fn sd2_pads_with_its_configured_token() {
        let one = ClipTokenizer::load(&fixtures().join("tiny-sd-1/tokenizer")).unwrap();
        let two = ClipTokenizer::load(&fixtures().join("tiny-sd-2/tokenizer")).unwrap();
        assert_eq!(one.pad_id, 49407);
        assert_eq!(two.inner.id_to_token(two.pad_id).as_deref(), Some("!"));
    }

    #[test]
    fn a_prompt_longer_than_the_encoder_is_an_error() {
        let tok = ClipTokenizer::load(&fixtures().join("tiny-sd-1/tokenizer")).unwrap();
        let long = vec!["cat ".repeat(100)];
        let e = tok.encode(&long, 7).err().unwrap().to_string();
        assert!(e.contains("stimulus 7") && e.contains("more than the text encoder's 77"), "{e}");
    }
}
