/*
 * chat.c - conversations as token ids in the chat format a model was tuned
 * with (vramzip.h: vz_chat_encode). Like llama.cpp's built-in templates,
 * the format is recognised from the Jinja template the checkpoint carries
 * (tokenizer_config.json, GGUF tokenizer.chat_template, the .vz CHAT
 * section) by its markers, and written here in C; no Jinja is evaluated.
 * Each format follows the template of its reference model as Hugging Face
 * renders it (trim_blocks, lstrip_blocks):
 *   zephyr   TinyLlama-1.1B-Chat: "<|user|>\n" content </s> "\n" ... "<|assistant|>\n"
 *   llama2   Llama-2-chat: <s>"[INST] <<SYS>>\n" system "\n<</SYS>>\n\n" user " [/INST]" " " answer " "</s>...
 *   mistral  Mistral-7B-Instruct v0.1/v0.2, Mixtral-8x7B-Instruct (tokenizer V1): <s>"[INST] " user
 *            " [/INST]" answer</s>..., the system message opening the first user message,
 *            followed by a blank line, as mistral-common (below) has them; and as it does, each
 *            answer is encoded on its own, so with SentencePiece's leading space (the first
 *            templates glued the answer to " [/INST]"; their later ones put ' ' + answer)
 *   mistral-v3  Mistral-7B-Instruct-v0.3, Mixtral-8x22B-Instruct (tokenizer V3): <s>[INST] user
 *            [/INST] answer</s>..., [INST] and [/INST] control tokens; the system message opens
 *            the last user message, followed by a blank line
 *   mistral-v7  Mistral-Large-2411 (tokenizer V7): mistral-v3 whose system message comes first,
 *            between [SYSTEM_PROMPT] and [/SYSTEM_PROMPT]
 *            These follow mistral-common, Mistral's reference encoder, whose ids their Hugging
 *            Face templates give for messages without white space at their ends: each text
 *            between control tokens encoded on its own (the SentencePiece leading space stands for
 *            the templates' "[INST] " and " " + answer), an answer with its trailing spaces cut
 *            (the templates trim both ends). Tekken-tokenizer models (Nemo, Small 3) carry the
 *            same markers; mistral-common adds no space there, and neither does this, but no
 *            Tekken vocabulary was checked.
 *   llama3   Llama-3-Instruct: <|begin_of_text|> then per message <|start_header_id|>role<|end_header_id|>
 *            "\n\n" content <|eot_id|>
 *   llama3.1 Llama-3.1/3.2/3.3-Instruct: llama3 whose system message always comes, opened by
 *            "Cutting Knowledge Date: December 2023\n" "Today Date: " date "\n\n" (date: today's
 *            as "%d %b %Y" where the template calls strftime_now, as 3.2's does, else its literal
 *            date_string, 3.1's "26 Jul 2024")
 *   chatml   Qwen 2 / 2.5: <|im_start|>role "\n" content <|im_end|> "\n", with the template's own
 *            default system message when the conversation has none
 * Special tokens (<s>, </s>, <|im_start|>, ...) are put in by id, never
 * spelled out and tokenized; the text between them is encoded piece by
 * piece, as Hugging Face's tokenizers cut text at special tokens first (a
 * SentencePiece model prepends its space to every piece, as Llama 2's
 * tokenizer.json does). A model with a BOS token starts with it once.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "model/model.h"
#include "tokenizer/tokenizer.h"

enum { CHAT_ZEPHYR, CHAT_LLAMA2, CHAT_MISTRAL, CHAT_LLAMA3, CHAT_CHATML, CHAT_LLAMA31, CHAT_MISTRAL3, CHAT_MISTRAL7,
       CHAT_N };
static const char *const kNames[CHAT_N] = {"zephyr", "llama2",   "mistral",    "llama3",
                                           "chatml", "llama3.1", "mistral-v3", "mistral-v7"};
#define FORMAT_LIST "zephyr, llama2, mistral, mistral-v3, mistral-v7, llama3, llama3.1, chatml"

const char *vz_chat_format_name(int32_t i) { return i >= 0 && i < CHAT_N ? kNames[i] : NULL; }

/* The format a Jinja chat template is recognised as, or -1. */
static int detect(const char *t) {
    if (!t) return -1;
    if (strstr(t, "<|im_start|>")) return CHAT_CHATML;
    if (strstr(t, "<|start_header_id|>")) return strstr(t, "Cutting Knowledge Date") ? CHAT_LLAMA31 : CHAT_LLAMA3;
    if (strstr(t, "<|user|>") && strstr(t, "<|assistant|>")) return CHAT_ZEPHYR;
    if (!strstr(t, "[INST]")) return -1;
    if (strstr(t, "<<SYS>>")) return CHAT_LLAMA2;
    if (strstr(t, "[SYSTEM_PROMPT]")) return CHAT_MISTRAL7;
    return strstr(t, " [/INST]") ? CHAT_MISTRAL : CHAT_MISTRAL3; /* v3 and later: nothing between content and [/INST] */
}

const char *vz_model_chat_template(const vz_model *m) { return m ? m->chat_template : NULL; }

const char *vz_model_chat_format(const vz_model *m) {
    int f = detect(vz_model_chat_template(m));
    return f < 0 ? NULL : kNames[f];
}

/* A chatml template's literal default system message (Qwen 2.5: "You are
 * Qwen, created by Alibaba Cloud. ..."): the text between
 * "<|im_start|>system" plus a newline (or the two characters \n of a Jinja
 * string) and "<|im_end|>", when it is plain text. 0 when there is none. */
static size_t default_system(const char *t, const char **out) {
    static const char kStart[] = "<|im_start|>system";
    for (const char *p = t ? strstr(t, kStart) : NULL; p; p = strstr(p + 1, kStart)) {
        const char *s = p + sizeof kStart - 1;
        if (*s == '\n') s++;
        else if (s[0] == '\\' && s[1] == 'n') s += 2;
        else continue;
        const char *e = strstr(s, "<|im_end|>");
        if (!e || e == s) continue;
        size_t n = (size_t)(e - s);
        if (memchr(s, '{', n) || memchr(s, '}', n) || memchr(s, '\'', n) || memchr(s, '"', n) || memchr(s, '\\', n) ||
            memchr(s, '+', n) || memchr(s, '\n', n))
            continue;
        *out = s;
        return n;
    }
    return 0;
}

/* Today's date as strftime_now("%d %b %Y") gives it, taken once a process:
 * `run -i` evaluates each turn from the last reply on, so the conversation's
 * earlier ids must not change when midnight passes. */
static char today[32];
static pthread_once_t today_once = PTHREAD_ONCE_INIT;

static void today_init(void) {
    time_t now = time(NULL);
    struct tm tm;
    if (now == (time_t)-1 || !localtime_r(&now, &tm) || !strftime(today, sizeof today, "%d %b %Y", &tm))
        snprintf(today, sizeof today, "26 Jul 2024"); /* no clock: the templates' own fallback */
}

/* The date of a llama3.1 system message, as its template would render it
 * without a date_string argument: today's (local time, "05 Dec 2026", as
 * of the process's first) when it calls strftime_now("%d %b %Y"), as Llama
 * 3.2's does and Hugging Face and llama.cpp provide; else its literal `set
 * date_string = "..."` (3.1's "26 Jul 2024"); else today's. */
static void llama31_date(const char *t, char out[32]) {
    static const char kSet[] = "date_string = \"";
    const char *p = t && !strstr(t, "strftime_now") ? strstr(t, kSet) : NULL;
    if (p) {
        p += sizeof kSet - 1;
        size_t n = strcspn(p, "\"\\{}\n");
        if (p[n] == '"' && n > 0 && n < 32) {
            memcpy(out, p, n);
            out[n] = 0;
            return;
        }
    }
    pthread_once(&today_once, today_init);
    memcpy(out, today, sizeof today);
}

/* Ids being built: a growing array, and the text since the last special
 * token, encoded as one piece when the next special token (or the end)
 * comes, as Hugging Face's tokenizers cut text at special tokens before
 * anything else. The first failure sticks in st. */
typedef struct chat_ids {
    const vz_tokenizer *t;
    int32_t *ids;
    int32_t n, cap;
    char *text;
    size_t tn, tcap;
    vz_status st;
} chat_ids;

static void push_id(chat_ids *b, int32_t id) {
    if (b->st != VZ_OK) return;
    if (b->n == b->cap) {
        int32_t cap = b->cap ? 2 * b->cap : 256;
        int32_t *p = realloc(b->ids, sizeof(int32_t) * (size_t)cap);
        if (!p) {
            b->st = VZ_FAIL(VZ_ERR_NOMEM, "chat: out of memory for %d ids", (int)cap);
            return;
        }
        b->ids = p, b->cap = cap;
    }
    b->ids[b->n++] = id;
}

/* Encodes the pending text (if any) into ids. */
static void flush(chat_ids *b) {
    if (b->st != VZ_OK || b->tn == 0) return;
    int32_t cap = b->tn < (1u << 28) ? (int32_t)b->tn + 8 : 0, n = 0; /* an id per byte at most, + a space piece */
    int32_t *ids = cap ? malloc(sizeof(int32_t) * (size_t)cap) : NULL;
    if (!ids) {
        b->st = VZ_FAIL(VZ_ERR_NOMEM, "chat: out of memory for %zu bytes of text", b->tn);
        return;
    }
    b->st = vz_tokenizer_encode(b->t, b->text, b->tn, 0, ids, cap, &n);
    for (int32_t i = 0; i < n && b->st == VZ_OK; i++) push_id(b, ids[i]);
    free(ids);
    b->tn = 0;
}

static void put_id(chat_ids *b, int32_t id) {
    flush(b);
    push_id(b, id);
}

/* Appends s (NULL: nothing) to the pending text. */
static void put_text(chat_ids *b, const char *s) {
    size_t n = s ? strlen(s) : 0;
    if (b->st != VZ_OK || n == 0) return;
    if (b->tn + n + 1 > b->tcap) {
        size_t cap = 2 * (b->tn + n + 1);
        char *p = realloc(b->text, cap);
        if (!p) {
            b->st = VZ_FAIL(VZ_ERR_NOMEM, "chat: out of memory for %zu bytes of text", cap);
            return;
        }
        b->text = p, b->tcap = cap;
    }
    memcpy(b->text + b->tn, s, n);
    b->tn += n;
    b->text[b->tn] = 0;
}

/* A special token by its piece; one the vocabulary lacks is a failure
 * (the model does not speak this format). */
static void put_special(chat_ids *b, const char *piece) {
    int32_t id = vz_tokenizer_piece_id(b->t, piece);
    if (id < 0 && b->st == VZ_OK)
        b->st = VZ_FAIL(VZ_ERR_UNSUPPORTED, "chat: the vocabulary has no token '%s' for this format", piece);
    put_id(b, id);
}

/* White space as Python's str.strip sees it in ASCII. */
static int is_space(char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

/* s without leading and trailing white space, in buf. */
static const char *strip(chat_ids *b, const char *s, char **buf) {
    while (is_space(*s)) s++;
    size_t n = strlen(s);
    while (n && is_space(s[n - 1])) n--;
    free(*buf);
    *buf = malloc(n + 1);
    if (!*buf) {
        if (b->st == VZ_OK) b->st = VZ_FAIL(VZ_ERR_NOMEM, "chat: out of memory");
        return "";
    }
    memcpy(*buf, s, n);
    (*buf)[n] = 0;
    return *buf;
}

static int is_role(const vz_chat_msg *m, const char *r) { return m->role && !strcmp(m->role, r); }

/* [INST] formats: an optional system message first, then user and assistant
 * by turns, starting with the user (the templates raise otherwise). */
static vz_status inst_turns(const vz_chat_msg *msgs, int32_t n, int32_t *first) {
    *first = n > 0 && is_role(&msgs[0], "system");
    for (int32_t i = *first; i < n; i++)
        VZ_FAIL_IF(!is_role(&msgs[i], (i - *first) % 2 ? "assistant" : "user"), VZ_ERR_ARG,
                   "chat: message %d is '%s'; this format takes an optional system message, then user and assistant "
                   "by turns",
                   (int)i, msgs[i].role ? msgs[i].role : "(null)");
    return VZ_OK;
}

static void render(chat_ids *b, int f, const vz_chat_msg *msgs, int32_t n, int add_assistant, const char *tmpl,
                   int32_t bos, int32_t eos) {
    char *tmp = NULL;
    int32_t first = 0;
    const int l3 = f == CHAT_LLAMA3 || f == CHAT_LLAMA31;
    if (!l3 && bos >= 0) put_id(b, bos); /* llama3's BOS is its own <|begin_of_text|> */
    switch (f) {
    case CHAT_ZEPHYR:
        for (int32_t i = 0; i < n; i++) {
            put_text(b, "<|"), put_text(b, msgs[i].role), put_text(b, "|>\n"), put_text(b, msgs[i].content);
            put_id(b, eos);
            put_text(b, "\n");
        }
        if (add_assistant) put_text(b, "<|assistant|>\n");
        break;
    case CHAT_LLAMA2:
    case CHAT_MISTRAL:
        if ((b->st = inst_turns(msgs, n, &first)) != VZ_OK) break;
        for (int32_t i = first; i < n; i++) {
            const char *c = msgs[i].content;
            if (is_role(&msgs[i], "assistant")) {
                if (f == CHAT_LLAMA2) put_text(b, " "), put_text(b, strip(b, c, &tmp)), put_text(b, " ");
                else flush(b), put_text(b, c); /* an answer of its own */
                put_id(b, eos);
                continue;
            }
            if (i > first && f == CHAT_LLAMA2) put_id(b, bos);
            put_text(b, "[INST] ");
            if (i == first && first && f == CHAT_LLAMA2) { /* the system message opens the first user message */
                put_text(b, "<<SYS>>\n"), put_text(b, msgs[0].content), put_text(b, "\n<</SYS>>\n\n");
                put_text(b, c); /* the template strips the whole: its end only, the start is the header */
                while (b->tn && is_space(b->text[b->tn - 1])) b->text[--b->tn] = 0;
            } else {
                if (i == first && first && *msgs[0].content) put_text(b, msgs[0].content), put_text(b, "\n\n");
                put_text(b, f == CHAT_LLAMA2 ? strip(b, c, &tmp) : c);
            }
            put_text(b, " [/INST]");
        }
        break;
    case CHAT_MISTRAL3:
    case CHAT_MISTRAL7: {
        if ((b->st = inst_turns(msgs, n, &first)) != VZ_OK) break;
        int32_t last = -1; /* mistral-v3's system message goes into the last user message */
        for (int32_t i = first; i < n; i++)
            if (is_role(&msgs[i], "user")) last = i;
        if (first && f == CHAT_MISTRAL7)
            put_special(b, "[SYSTEM_PROMPT]"), put_text(b, msgs[0].content), put_special(b, "[/SYSTEM_PROMPT]");
        for (int32_t i = first; i < n; i++) {
            const char *c = msgs[i].content;
            if (is_role(&msgs[i], "assistant")) {
                size_t k = strlen(c);
                while (k && c[k - 1] == ' ') k--;
                free(tmp);
                if (!(tmp = malloc(k + 1))) { b->st = VZ_FAIL(VZ_ERR_NOMEM, "chat: out of memory"); break; }
                memcpy(tmp, c, k), tmp[k] = 0;
                put_text(b, tmp);
                put_id(b, eos);
                continue;
            }
            put_special(b, "[INST]");
            if (i == last && first && f == CHAT_MISTRAL3 && *msgs[0].content)
                put_text(b, msgs[0].content), put_text(b, "\n\n");
            put_text(b, c);
            put_special(b, "[/INST]");
        }
        break;
    }
    case CHAT_LLAMA3:
    case CHAT_LLAMA31:
        put_special(b, "<|begin_of_text|>");
        if (f == CHAT_LLAMA31) { /* the system message, dated, always; the conversation's own goes in it */
            char date[32];
            llama31_date(tmpl, date);
            put_special(b, "<|start_header_id|>");
            put_text(b, "system");
            put_special(b, "<|end_header_id|>");
            put_text(b, "\n\nCutting Knowledge Date: December 2023\nToday Date: "), put_text(b, date);
            put_text(b, "\n\n");
            if (n > 0 && is_role(&msgs[0], "system")) put_text(b, strip(b, msgs[0].content, &tmp)), first = 1;
            put_special(b, "<|eot_id|>");
        }
        for (int32_t i = first; i <= n; i++) {
            if (i == n && !add_assistant) break;
            put_special(b, "<|start_header_id|>");
            put_text(b, i < n ? msgs[i].role : "assistant");
            put_special(b, "<|end_header_id|>");
            put_text(b, "\n\n");
            if (i == n) break;
            put_text(b, strip(b, msgs[i].content, &tmp));
            put_special(b, "<|eot_id|>");
        }
        break;
    case CHAT_CHATML: {
        const char *ds = NULL;
        size_t dn = n > 0 && is_role(&msgs[0], "system") ? 0 : default_system(tmpl, &ds);
        if (dn) {
            put_special(b, "<|im_start|>");
            put_text(b, "system\n");
            tmp = malloc(dn + 1);
            if (!tmp) { b->st = VZ_FAIL(VZ_ERR_NOMEM, "chat: out of memory"); break; }
            memcpy(tmp, ds, dn);
            tmp[dn] = 0;
            put_text(b, tmp);
            put_special(b, "<|im_end|>");
            put_text(b, "\n");
        }
        for (int32_t i = 0; i <= n; i++) {
            if (i == n && !add_assistant) break;
            put_special(b, "<|im_start|>");
            put_text(b, i < n ? msgs[i].role : "assistant"), put_text(b, "\n");
            if (i == n) break;
            put_text(b, msgs[i].content);
            put_special(b, "<|im_end|>");
            put_text(b, "\n");
        }
        break;
    }
    }
    flush(b);
    free(tmp);
}

vz_status vz_chat_encode(const vz_model *m, const char *format, const vz_chat_msg *msgs, int32_t n,
                         int32_t add_assistant, int32_t *ids, int32_t cap, int32_t *n_out) {
    VZ_FAIL_IF(!m || (n > 0 && !msgs) || n < 0 || !n_out || cap < 0 || (cap > 0 && !ids), VZ_ERR_ARG,
               "vz_chat_encode: bad arguments");
    *n_out = 0;
    const vz_tokenizer *t = vz_model_tokenizer(m);
    VZ_FAIL_IF(!t, VZ_ERR_ARG, "%s: no tokenizer, so no chat (give one with -z)", m->path);
    int f = -1;
    if (format) {
        for (int i = 0; i < CHAT_N; i++)
            if (!strcmp(format, kNames[i])) f = i;
        VZ_FAIL_IF(f < 0, VZ_ERR_ARG, "chat format '%s' is unknown (" FORMAT_LIST ")", format);
    } else {
        f = detect(m->chat_template);
        VZ_FAIL_IF(f < 0, VZ_ERR_UNSUPPORTED,
                   "%s: %s; name one of " FORMAT_LIST " (--chat-template)", m->path,
                   m->chat_template ? "its chat template is none of the built-in formats"
                                    : "the checkpoint has no chat template");
    }
    for (int32_t i = 0; i < n; i++)
        VZ_FAIL_IF(!msgs[i].content || !(is_role(&msgs[i], "system") || is_role(&msgs[i], "user") ||
                                         is_role(&msgs[i], "assistant")),
                   VZ_ERR_ARG, "chat: message %d: role '%s' is not system, user or assistant, or no content", (int)i,
                   msgs[i].role ? msgs[i].role : "(null)");
    const int32_t bos = vz_tokenizer_bos(t), eos = vz_tokenizer_eos(t);
    VZ_FAIL_IF(f != CHAT_LLAMA3 && f != CHAT_LLAMA31 && f != CHAT_CHATML && eos < 0, VZ_ERR_UNSUPPORTED,
               "%s: the %s format ends turns with EOS, and the tokenizer has none", m->path, kNames[f]);
    VZ_FAIL_IF(f == CHAT_LLAMA2 && bos < 0, VZ_ERR_UNSUPPORTED, "%s: the llama2 format needs a BOS token", m->path);
    chat_ids b = {.t = t, .st = VZ_OK};
    render(&b, f, msgs, n, add_assistant, m->chat_template, bos, eos);
    if (b.st == VZ_OK) {
        *n_out = b.n;
        if (b.n > cap) b.st = VZ_FAIL(VZ_ERR_ARG, "chat: %d ids do not fit in %d", (int)b.n, (int)cap);
        else memcpy(ids, b.ids, sizeof(int32_t) * (size_t)b.n);
    }
    free(b.ids);
    free(b.text);
    return b.st;
}
