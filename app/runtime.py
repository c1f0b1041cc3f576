"""From the config to a running conversation: the scheduler's and the session's settings, and the system prompt.
Headless mode, the benchmarks and the desktop window all start conversations through here."""
from __future__ import annotations

from app.config import Config
from app.conversation.session import SessionSettings
from app.conversation.state import TurnSettings
from app.conversation.vad_segmenter import VadSettings
from app.paths import asset
from scheduler import Scheduler, SchedulerSettings, configure_thread_pools


def scheduler_settings(cfg: Config) -> SchedulerSettings:
    s = cfg.scheduler
    return SchedulerSettings(mode=s.mode, first_chunk_max_tokens=s.first_chunk_max_tokens,
                             chunk_tokens=s.chunk_tokens, max_chunk_tokens=s.max_chunk_tokens,
                             lead_target_s=s.lead_target_s, lead_comfortable_s=s.lead_comfortable_s,
                             device_threads=s.device_threads)


def session_settings(cfg: Config) -> SessionSettings:
    t = cfg.turn
    max_wait = t.max_wait_ms / 1000
    turn = TurnSettings(pause_s=t.pause_ms / 1000, max_wait_s=max_wait, disagree_wait_s=min(1.5, max_wait),
                        min_barge_in_s=t.min_barge_in_ms / 1000, turn_threshold=t.turn_threshold)
    vad = VadSettings(threshold=t.vad_threshold, pause_s=t.pause_ms / 1000)
    # the prompt must leave room for the reply: ~3 characters per token is a safe bound for English. Within the
    # window, the history is held to `llm.history_tokens`: each token of context slows every later answer (a
    # 200-turn soak with a full 4096-token window answered 84 % slower at the end than at the start)
    prompt_chars = len(system_prompt(cfg))
    fits = (cfg.llm.n_ctx - cfg.llm.max_reply_tokens - 64) * 3 - prompt_chars
    history_chars = max(1000, min(fits, prompt_chars + 3 * cfg.llm.history_tokens))
    return SessionSettings(turn=turn, vad=vad, max_reply_tokens=cfg.llm.max_reply_tokens, history_chars=history_chars)


def system_prompt(cfg: Config) -> str:
    return cfg.llm.system_prompt or asset("system_prompt.txt").read_text(encoding="utf-8").strip()


def new_scheduler(cfg: Config) -> Scheduler:
    configure_thread_pools(cfg.scheduler.device_threads)
    return Scheduler(scheduler_settings(cfg))
