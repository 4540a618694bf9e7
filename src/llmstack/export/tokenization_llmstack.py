"""Hugging Face tokenizer of an llmstack model: its sentencepiece file plus the chat specials, which
the file holds as control symbols with their own ids. Exported with the model; needs only
sentencepiece + transformers.

Plain text is encoded exactly as llmstack encodes it (sentencepiece, no dummy prefix, byte
fallback); the special strings ("<|user_start|>"...) are registered as special tokens, so the chat
template's output maps them to their ids. `tokenizer(text)` prepends <|bos|>, which starts every
document the model was trained on; chat templates add their own and are encoded without it.
"""

import os
import shutil

import sentencepiece as spm
from transformers import PreTrainedTokenizer

CHAT_SPECIALS = [
    "<|user_start|>",
    "<|user_end|>",
    "<|assistant_start|>",
    "<|python_start|>",
    "<|python_end|>",
    "<|output_start|>",
    "<|output_end|>",
]


class LlmstackTokenizer(PreTrainedTokenizer):
    vocab_files_names = {"vocab_file": "tokenizer.model"}
    model_input_names = ["input_ids", "attention_mask"]

    def __init__(
        self,
        vocab_file,
        bos_token="<|bos|>",
        eos_token="<|assistant_end|>",
        unk_token="<unk>",
        pad_token="<|assistant_end|>",
        add_bos_token=True,
        additional_special_tokens=None,
        clean_up_tokenization_spaces=False,
        **kwargs,
    ):
        # The processor must exist before the base class asks for the vocabulary.
        self.vocab_file = vocab_file
        self.sp = spm.SentencePieceProcessor(model_file=vocab_file)
        self.add_bos_token = add_bos_token
        kwargs.pop("extra_special_tokens", None)  # transformers 5 saves the same list under this name
        super().__init__(
            bos_token=bos_token,
            eos_token=eos_token,
            unk_token=unk_token,
            pad_token=pad_token,
            additional_special_tokens=additional_special_tokens or list(CHAT_SPECIALS),
            clean_up_tokenization_spaces=clean_up_tokenization_spaces,
            add_bos_token=add_bos_token,
            **kwargs,
        )

    @property
    def vocab_size(self) -> int:
        return self.sp.get_piece_size()

    def get_vocab(self) -> dict[str, int]:
        return {self.sp.id_to_piece(i): i for i in range(self.vocab_size)}

    def _tokenize(self, text, **kwargs):
        return self.sp.encode(text, out_type=str)

    def _convert_token_to_id(self, token):
        return self.sp.piece_to_id(token)

    def _convert_id_to_token(self, index):
        return self.sp.id_to_piece(int(index))

    def convert_tokens_to_string(self, tokens):
        """Pieces to text; special pieces appear as their strings (sentencepiece would drop them)."""
        out, run = [], []
        for piece in tokens:
            if self.sp.is_control(self.sp.piece_to_id(piece)):
                if run:
                    out.append(self.sp.decode_pieces(run))
                    run = []
                out.append(piece)
            else:
                run.append(piece)
        if run:
            out.append(self.sp.decode_pieces(run))
        return "".join(out)

    def build_inputs_with_special_tokens(self, token_ids_0, token_ids_1=None):
        bos = [self.bos_token_id] if self.add_bos_token else []
        ids = bos + list(token_ids_0)
        return ids if token_ids_1 is None else ids + bos + list(token_ids_1)

    def get_special_tokens_mask(self, token_ids_0, token_ids_1=None, already_has_special_tokens=False):
        if already_has_special_tokens:
            return [int(self.sp.is_control(int(i))) for i in token_ids_0 + (token_ids_1 or [])]
        bos = [1] if self.add_bos_token else []
        mask = bos + [0] * len(token_ids_0)
        return mask if token_ids_1 is None else mask + bos + [0] * len(token_ids_1)

    def num_special_tokens_to_add(self, pair=False):
        return int(self.add_bos_token) * (2 if pair else 1)

    def save_vocabulary(self, save_directory, filename_prefix=None):
        name = (filename_prefix + "-" if filename_prefix else "") + self.vocab_files_names["vocab_file"]
        out = os.path.join(save_directory, name)
        if os.path.abspath(out) != os.path.abspath(self.vocab_file):
            shutil.copyfile(self.vocab_file, out)
        return (out,)
