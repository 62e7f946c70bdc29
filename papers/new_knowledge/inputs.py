"""The study's inputs: the base LM and the questions (shared root-stage outputs on the CPU profile,
an open pretrained LLM and EntityQuestions on the full profile), and the token-level formats."""

from typing import Dict, List

from common.config import resolve
from common.knowledge import load_entity_questions, load_knowledge_base, qa_line
from common.lm import encode, load_lm, newline_id


def load_questions(cfg) -> Dict[str, List[dict]]:
    if cfg.questions:
        return load_entity_questions(resolve(cfg, cfg.questions) if not cfg.questions.startswith("/") else cfg.questions)
    return load_knowledge_base(resolve(cfg, cfg.paths.data, "knowledge", "facts"))


def load_base(cfg, dropout: float = 0.0):
    """(model, tokenizer, meta) of the model before fine-tuning; `dropout` > 0 sets the GPT-2 dropouts."""
    src = cfg.base_lm or str(resolve(cfg, cfg.paths.models, "knowledge_lm"))
    hint = f"base_lm = {cfg.base_lm!r} in papers/new_knowledge/params.yaml" if cfg.base_lm else None
    over = {"resid_pdrop": dropout, "embd_pdrop": dropout, "attn_pdrop": dropout} if dropout else {}
    try:
        return load_lm(src, hint=hint, **over)
    except (TypeError, ValueError):  # a model family without GPT-2's dropout names
        return load_lm(src, hint=hint)


def prompt_ids(tok, text: str) -> List[int]:
    """Token ids of a prompt, starting a document like the corpus does (<bos>, when the tokenizer has one)."""
    bos = [tok.bos_token_id] if tok.bos_token_id is not None else []
    return bos + encode(tok, text)


def answer_ids(tok, answer: str) -> List[int]:
    return encode(tok, answer)


def zero_shot_prompt(question: str) -> str:
    """The fine-tuning and test format: the question alone, answered after 'A:' (paper: 'Answer the
    following question. {q}'; ours is the corpus' QA line, which the base model has seen)."""
    return qa_line(question)


def finetune_target(tok, answer: str) -> List[int]:
    """What fine-tuning teaches after the prompt: the answer and the end of the line."""
    return answer_ids(tok, answer) + [newline_id(tok)]
