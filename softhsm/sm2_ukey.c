/*
 * A PKCS#11 module standing in for a Chinese USB key's (UKey's) vendor module: SM2 keys, offered
 * under vendor-defined mechanisms, because PKCS#11 3.1 defines no SM2 mechanism.
 *
 * FOR TESTING ONLY. Tokens are directories under $CERTGATE_SM2_UKEY_DIR, one per slot, written by
 * `certgate softhsm sm2-init` / `sm2-issue` (softhsm/sm2_ukey.py):
 *
 *   <token>/token.conf          slot=N, label=..., serial=..., salt=hex, pin=hex, max_tries=N
 *   <token>/pin_failures        wrong user PINs in a row (the retry counter, kept across processes)
 *   <token>/objects/<ID>.crt    certificate (DER); <ID> is the CKA_ID in hex
 *   <token>/objects/<ID>.key    SM2 private key, PKCS#8 PEM encrypted with the user PIN
 *   <token>/objects/<ID>.label  CKA_LABEL (UTF-8)
 *
 * `pin` is PBKDF2-HMAC-SHA256(PIN, salt, 10000 rounds, 32 bytes). A wrong PIN counts; at
 * max_tries the token is locked (CKR_PIN_LOCKED, USER_PIN_LOCKED) as real keys are; a right PIN
 * resets the count and decrypts the keys for the login. The slot list is read again at every
 * C_GetSlotList, so a token directory removed is a key pulled out, one added a key inserted.
 *
 * Mechanisms (vendor-defined numbers, as on real UKeys):
 *   CKM_VENDOR_SM2_SM3 0x80008101  SM2 with SM3 over the message: Z_A and SM3 inside the token
 *                                  (GM/T 0009). Parameter: the signer ID (none: 1234567812345678).
 *   CKM_VENDOR_SM2     0x80008102  SM2 over e, the 32-byte digest SM3(Z_A || M) computed outside.
 * Both answer r || s, 32 bytes each, as CKM_ECDSA does.
 *
 * Keys are CKK_EC objects whose CKA_EC_PARAMS is the SM2 curve OID 1.2.156.10197.1.301.
 *
 * Build: cc -shared -fPIC -I/usr/include/p11-kit-1 sm2_ukey.c -o libcertgate-sm2-ukey.so -lcrypto
 */
#include <dirent.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <p11-kit/pkcs11.h>

#define CKM_VENDOR_SM2_SM3 0x80008101UL
#define CKM_VENDOR_SM2 0x80008102UL

#define MAX_SLOTS 64
#define MAX_OBJECTS 32
#define MAX_SESSIONS 64
#define PBKDF2_ROUNDS 10000
#define SM2_SIGNATURE_BYTES 64

static const unsigned char SM2_CURVE_OID_DER[] = {0x06, 0x08, 0x2a, 0x81, 0x1c, 0xcf,
                                                  0x55, 0x01, 0x82, 0x2d};
static const char DEFAULT_SIGNER_ID[] = "1234567812345678";

struct object {
    CK_OBJECT_CLASS object_class;
    unsigned char id[64];
    CK_ULONG id_len;
    char label[256];
    unsigned char *value; /* certificate DER */
    CK_ULONG value_len;
    EVP_PKEY *key; /* private keys, while logged in */
};

struct token {
    int present;
    CK_SLOT_ID slot_id;
    char path[4096];
    char label[33];
    char serial[17];
    unsigned char salt[32];
    size_t salt_len;
    unsigned char pin_hash[32];
    unsigned long max_tries;
    int logged_in;
    int sessions;
    struct object objects[MAX_OBJECTS];
    int object_count;
};

struct session {
    int open;
    int slot_index;
    CK_FLAGS flags;
    /* C_FindObjects */
    int finding;
    CK_ATTRIBUTE *template;
    CK_ULONG template_count;
    int find_next;
    /* C_SignInit .. C_Sign */
    int signing;
    CK_MECHANISM_TYPE mechanism;
    int key_index;
    unsigned char signer_id[256];
    size_t signer_id_len;
};

static int initialized = 0;
static struct token tokens[MAX_SLOTS];
static struct session sessions[MAX_SESSIONS];

static void pad(CK_UTF8CHAR *field, size_t size, const char *text) {
    size_t length = strlen(text);
    memset(field, ' ', size);
    memcpy(field, text, length < size ? length : size);
}

static const char *directory(void) {
    const char *path = getenv("CERTGATE_SM2_UKEY_DIR");
    return path != NULL && path[0] != '\0' ? path : NULL;
}

static int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static size_t from_hex(const char *text, unsigned char *out, size_t size) {
    size_t n = 0;
    while (text[0] != '\0' && text[1] != '\0' && n < size) {
        int high = hex_value(text[0]), low = hex_value(text[1]);
        if (high < 0 || low < 0) break;
        out[n++] = (unsigned char)(high * 16 + low);
        text += 2;
    }
    return n;
}

static unsigned char *read_file(const char *path, size_t *length) {
    FILE *file = fopen(path, "rb");
    unsigned char *data;
    long size;
    if (file == NULL) return NULL;
    fseek(file, 0, SEEK_END);
    size = ftell(file);
    fseek(file, 0, SEEK_SET);
    data = malloc(size > 0 ? (size_t)size + 1 : 1);
    if (data == NULL || (size > 0 && fread(data, 1, (size_t)size, file) != (size_t)size)) {
        free(data);
        fclose(file);
        return NULL;
    }
    fclose(file);
    data[size > 0 ? size : 0] = '\0';
    *length = size > 0 ? (size_t)size : 0;
    return data;
}

/* token.conf into *token; 0 when it is not a complete token. */
static int read_token_conf(struct token *token) {
    char path[4200], line[512];
    FILE *file;
    int have_pin = 0, have_slot = 0;
    snprintf(path, sizeof(path), "%s/token.conf", token->path);
    file = fopen(path, "r");
    if (file == NULL) return 0;
    token->max_tries = 6;
    token->label[0] = token->serial[0] = '\0';
    while (fgets(line, sizeof(line), file) != NULL) {
        char *value = strchr(line, '=');
        if (value == NULL) continue;
        *value++ = '\0';
        value[strcspn(value, "\r\n")] = '\0';
        if (strcmp(line, "slot") == 0) {
            token->slot_id = strtoul(value, NULL, 10);
            have_slot = 1;
        } else if (strcmp(line, "label") == 0) {
            snprintf(token->label, sizeof(token->label), "%s", value);
        } else if (strcmp(line, "serial") == 0) {
            snprintf(token->serial, sizeof(token->serial), "%s", value);
        } else if (strcmp(line, "salt") == 0) {
            token->salt_len = from_hex(value, token->salt, sizeof(token->salt));
        } else if (strcmp(line, "pin") == 0) {
            have_pin = from_hex(value, token->pin_hash, sizeof(token->pin_hash)) == 32;
        } else if (strcmp(line, "max_tries") == 0 && strtoul(value, NULL, 10) > 0) {
            token->max_tries = strtoul(value, NULL, 10);
        }
    }
    fclose(file);
    return have_pin && have_slot;
}

static unsigned long pin_failures(const struct token *token) {
    char path[4200];
    size_t length;
    unsigned char *text;
    unsigned long count;
    snprintf(path, sizeof(path), "%s/pin_failures", token->path);
    text = read_file(path, &length);
    if (text == NULL) return 0;
    count = strtoul((char *)text, NULL, 10);
    free(text);
    return count;
}

static int write_pin_failures(const struct token *token, unsigned long count) {
    char path[4200], temporary[4300];
    FILE *file;
    snprintf(path, sizeof(path), "%s/pin_failures", token->path);
    snprintf(temporary, sizeof(temporary), "%s.tmp", path);
    file = fopen(temporary, "w");
    if (file == NULL) return 0;
    fprintf(file, "%lu\n", count);
    if (fclose(file) != 0) return 0;
    return rename(temporary, path) == 0;
}

static void free_keys(struct token *token) {
    int i;
    for (i = 0; i < token->object_count; i++) {
        if (token->objects[i].key != NULL) {
            EVP_PKEY_free(token->objects[i].key);
            token->objects[i].key = NULL;
        }
    }
}

static void free_objects(struct token *token) {
    int i;
    free_keys(token);
    for (i = 0; i < token->object_count; i++) free(token->objects[i].value);
    token->object_count = 0;
}

/* Certificates and (not yet decrypted) private keys found in <token>/objects. */
static void load_objects(struct token *token) {
    char path[4200];
    struct dirent **entries;
    int count, i;
    free_objects(token);
    snprintf(path, sizeof(path), "%s/objects", token->path);
    count = scandir(path, &entries, NULL, alphasort);
    if (count < 0) return;
    for (i = 0; i < count; i++) {
        char *name = entries[i]->d_name, *dot = strrchr(name, '.');
        char file[4500], stem[256];
        struct object *object;
        size_t length;
        unsigned char *label;
        if (dot == NULL || token->object_count >= MAX_OBJECTS ||
            (strcmp(dot, ".crt") != 0 && strcmp(dot, ".key") != 0) ||
            (size_t)(dot - name) >= sizeof(stem)) {
            free(entries[i]);
            continue;
        }
        memcpy(stem, name, (size_t)(dot - name));
        stem[dot - name] = '\0';
        object = &token->objects[token->object_count];
        memset(object, 0, sizeof(*object));
        object->id_len = from_hex(stem, object->id, sizeof(object->id));
        snprintf(file, sizeof(file), "%s/%s.label", path, stem);
        label = read_file(file, &length);
        snprintf(object->label, sizeof(object->label), "%s", label != NULL ? (char *)label : "");
        free(label);
        if (strcmp(dot, ".crt") == 0) {
            snprintf(file, sizeof(file), "%s/%s", path, name);
            object->object_class = CKO_CERTIFICATE;
            object->value = read_file(file, &length);
            object->value_len = length;
            if (object->value == NULL) {
                free(entries[i]);
                continue;
            }
        } else {
            object->object_class = CKO_PRIVATE_KEY;
        }
        token->object_count++;
        free(entries[i]);
    }
    free(entries);
}

/* Re-read the token directories: what is gone was pulled out, what is new was inserted. */
static void scan(void) {
    const char *root = directory();
    struct dirent **entries;
    int count, i, j;
    int seen[MAX_SLOTS] = {0};
    if (root == NULL) count = 0;
    else count = scandir(root, &entries, NULL, alphasort);
    for (i = 0; i < count; i++) {
        struct token found;
        int slot = -1;
        memset(&found, 0, sizeof(found));
        if (entries[i]->d_name[0] == '.') {
            free(entries[i]);
            continue;
        }
        snprintf(found.path, sizeof(found.path), "%s/%s", root, entries[i]->d_name);
        free(entries[i]);
        if (!read_token_conf(&found) || found.slot_id >= MAX_SLOTS) continue;
        slot = (int)found.slot_id;
        if (seen[slot]) continue; /* two directories claim one slot: the first wins */
        seen[slot] = 1;
        if (tokens[slot].present && strcmp(tokens[slot].path, found.path) == 0 &&
            strcmp(tokens[slot].serial, found.serial) == 0) {
            continue; /* the same key, still inserted */
        }
        free_objects(&tokens[slot]);
        for (j = 0; j < MAX_SESSIONS; j++) {
            if (sessions[j].open && sessions[j].slot_index == slot) sessions[j].open = 0;
        }
        tokens[slot] = found;
        tokens[slot].present = 1;
    }
    if (count > 0) free(entries);
    for (i = 0; i < MAX_SLOTS; i++) {
        if (tokens[i].present && !seen[i]) {
            free_objects(&tokens[i]);
            tokens[i].present = 0;
            tokens[i].logged_in = 0;
            tokens[i].sessions = 0;
            for (j = 0; j < MAX_SESSIONS; j++) {
                if (sessions[j].open && sessions[j].slot_index == i) sessions[j].open = 0;
            }
        }
    }
}

/* The token still in its slot: its token.conf is still there. */
static int still_present(struct token *token) {
    char path[4200];
    struct stat status;
    snprintf(path, sizeof(path), "%s/token.conf", token->path);
    if (token->present && stat(path, &status) == 0) return 1;
    return 0;
}

static struct session *session_of(CK_SESSION_HANDLE handle) {
    if (handle == 0 || handle > MAX_SESSIONS || !sessions[handle - 1].open) return NULL;
    return &sessions[handle - 1];
}

static CK_RV session_token(CK_SESSION_HANDLE handle, struct session **session,
                           struct token **token) {
    if (!initialized) return CKR_CRYPTOKI_NOT_INITIALIZED;
    *session = session_of(handle);
    if (*session == NULL) return CKR_SESSION_HANDLE_INVALID;
    *token = &tokens[(*session)->slot_index];
    if (!still_present(*token)) return CKR_DEVICE_REMOVED;
    return CKR_OK;
}

static CK_RV not_supported(void) { return CKR_FUNCTION_NOT_SUPPORTED; }

static CK_RV c_initialize(CK_VOID_PTR args) {
    (void)args;
    if (initialized) return CKR_CRYPTOKI_ALREADY_INITIALIZED;
    memset(tokens, 0, sizeof(tokens));
    memset(sessions, 0, sizeof(sessions));
    initialized = 1;
    scan();
    return CKR_OK;
}

static CK_RV c_finalize(CK_VOID_PTR reserved) {
    int i;
    (void)reserved;
    if (!initialized) return CKR_CRYPTOKI_NOT_INITIALIZED;
    for (i = 0; i < MAX_SESSIONS; i++) free(sessions[i].template);
    for (i = 0; i < MAX_SLOTS; i++) free_objects(&tokens[i]);
    memset(sessions, 0, sizeof(sessions));
    initialized = 0;
    return CKR_OK;
}

static CK_RV c_get_info(CK_INFO_PTR info) {
    if (!initialized) return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (info == NULL) return CKR_ARGUMENTS_BAD;
    memset(info, 0, sizeof(*info));
    info->cryptokiVersion.major = 2;
    info->cryptokiVersion.minor = 40;
    pad(info->manufacturerID, sizeof(info->manufacturerID), "CertGate Test UKey");
    pad(info->libraryDescription, sizeof(info->libraryDescription), "SM2 UKey stand-in");
    info->libraryVersion.major = 1;
    return CKR_OK;
}

static CK_RV c_get_slot_list(CK_BBOOL token_present, CK_SLOT_ID_PTR list, CK_ULONG_PTR count) {
    CK_ULONG n = 0, i;
    (void)token_present; /* a slot exists while its token does, as with a USB key */
    if (!initialized) return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (count == NULL) return CKR_ARGUMENTS_BAD;
    scan();
    for (i = 0; i < MAX_SLOTS; i++) {
        if (!tokens[i].present) continue;
        if (list != NULL && n < *count) list[n] = i;
        n++;
    }
    if (list != NULL && n > *count) {
        *count = n;
        return CKR_BUFFER_TOO_SMALL;
    }
    *count = n;
    return CKR_OK;
}

static CK_RV c_get_slot_info(CK_SLOT_ID slot, CK_SLOT_INFO_PTR info) {
    if (!initialized) return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (slot >= MAX_SLOTS || !tokens[slot].present) return CKR_SLOT_ID_INVALID;
    memset(info, 0, sizeof(*info));
    pad(info->slotDescription, sizeof(info->slotDescription), "SM2 UKey reader");
    pad(info->manufacturerID, sizeof(info->manufacturerID), "CertGate Test UKey");
    info->flags = CKF_TOKEN_PRESENT | CKF_REMOVABLE_DEVICE | CKF_HW_SLOT;
    return CKR_OK;
}

static CK_RV c_get_token_info(CK_SLOT_ID slot, CK_TOKEN_INFO_PTR info) {
    struct token *token;
    unsigned long failures;
    if (!initialized) return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (slot >= MAX_SLOTS || !tokens[slot].present) return CKR_SLOT_ID_INVALID;
    token = &tokens[slot];
    if (!still_present(token)) return CKR_TOKEN_NOT_PRESENT;
    memset(info, 0, sizeof(*info));
    pad(info->label, sizeof(info->label), token->label);
    pad(info->manufacturerID, sizeof(info->manufacturerID), "CertGate Test UKey");
    pad(info->model, sizeof(info->model), "SM2 UKey");
    pad(info->serialNumber, sizeof(info->serialNumber), token->serial);
    info->flags = CKF_TOKEN_INITIALIZED | CKF_LOGIN_REQUIRED | CKF_USER_PIN_INITIALIZED |
                  CKF_WRITE_PROTECTED;
    failures = pin_failures(token);
    if (failures >= token->max_tries) {
        info->flags |= CKF_USER_PIN_LOCKED;
    } else if (failures > 0) {
        info->flags |= CKF_USER_PIN_COUNT_LOW;
        if (failures + 1 == token->max_tries) info->flags |= CKF_USER_PIN_FINAL_TRY;
    }
    info->ulMaxSessionCount = MAX_SESSIONS;
    info->ulSessionCount = (CK_ULONG)token->sessions;
    info->ulMaxRwSessionCount = 0;
    info->ulMaxPinLen = 64;
    info->ulMinPinLen = 4;
    info->ulTotalPublicMemory = info->ulFreePublicMemory = CK_UNAVAILABLE_INFORMATION;
    info->ulTotalPrivateMemory = info->ulFreePrivateMemory = CK_UNAVAILABLE_INFORMATION;
    info->hardwareVersion.major = 1;
    info->firmwareVersion.major = 1;
    return CKR_OK;
}

static const CK_MECHANISM_TYPE MECHANISMS[] = {CKM_VENDOR_SM2_SM3, CKM_VENDOR_SM2};

static CK_RV c_get_mechanism_list(CK_SLOT_ID slot, CK_MECHANISM_TYPE_PTR list,
                                  CK_ULONG_PTR count) {
    CK_ULONG n = sizeof(MECHANISMS) / sizeof(MECHANISMS[0]);
    if (!initialized) return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (slot >= MAX_SLOTS || !tokens[slot].present) return CKR_SLOT_ID_INVALID;
    if (list != NULL) {
        if (*count < n) {
            *count = n;
            return CKR_BUFFER_TOO_SMALL;
        }
        memcpy(list, MECHANISMS, sizeof(MECHANISMS));
    }
    *count = n;
    return CKR_OK;
}

static CK_RV c_get_mechanism_info(CK_SLOT_ID slot, CK_MECHANISM_TYPE type,
                                  CK_MECHANISM_INFO_PTR info) {
    if (!initialized) return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (slot >= MAX_SLOTS || !tokens[slot].present) return CKR_SLOT_ID_INVALID;
    if (type != CKM_VENDOR_SM2_SM3 && type != CKM_VENDOR_SM2) return CKR_MECHANISM_INVALID;
    info->ulMinKeySize = info->ulMaxKeySize = 256;
    info->flags = CKF_HW | CKF_SIGN;
    return CKR_OK;
}

static CK_RV c_open_session(CK_SLOT_ID slot, CK_FLAGS flags, CK_VOID_PTR application,
                            CK_NOTIFY notify, CK_SESSION_HANDLE_PTR handle) {
    int i;
    (void)application;
    (void)notify;
    if (!initialized) return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (slot >= MAX_SLOTS || !tokens[slot].present) return CKR_SLOT_ID_INVALID;
    if (!(flags & CKF_SERIAL_SESSION)) return CKR_SESSION_PARALLEL_NOT_SUPPORTED;
    if (flags & CKF_RW_SESSION) return CKR_TOKEN_WRITE_PROTECTED;
    if (!still_present(&tokens[slot])) return CKR_TOKEN_NOT_PRESENT;
    for (i = 0; i < MAX_SESSIONS; i++) {
        if (!sessions[i].open) break;
    }
    if (i == MAX_SESSIONS) return CKR_SESSION_COUNT;
    memset(&sessions[i], 0, sizeof(sessions[i]));
    sessions[i].open = 1;
    sessions[i].slot_index = (int)slot;
    sessions[i].flags = flags;
    if (tokens[slot].sessions++ == 0) load_objects(&tokens[slot]);
    *handle = (CK_SESSION_HANDLE)(i + 1);
    return CKR_OK;
}

static void logout(struct token *token) {
    free_keys(token);
    token->logged_in = 0;
}

static CK_RV c_close_session(CK_SESSION_HANDLE handle) {
    struct session *session;
    struct token *token;
    if (!initialized) return CKR_CRYPTOKI_NOT_INITIALIZED;
    session = session_of(handle);
    if (session == NULL) return CKR_SESSION_HANDLE_INVALID;
    token = &tokens[session->slot_index];
    free(session->template);
    memset(session, 0, sizeof(*session));
    if (--token->sessions <= 0) {
        token->sessions = 0;
        logout(token); /* the last session closed: the token is logged out (PKCS#11 5.6) */
    }
    return CKR_OK;
}

static CK_RV c_close_all_sessions(CK_SLOT_ID slot) {
    int i;
    if (!initialized) return CKR_CRYPTOKI_NOT_INITIALIZED;
    for (i = 0; i < MAX_SESSIONS; i++) {
        if (sessions[i].open && sessions[i].slot_index == (int)slot) c_close_session(i + 1);
    }
    return CKR_OK;
}

static CK_RV c_get_session_info(CK_SESSION_HANDLE handle, CK_SESSION_INFO_PTR info) {
    struct session *session;
    struct token *token;
    CK_RV rv = session_token(handle, &session, &token);
    if (rv != CKR_OK) return rv;
    info->slotID = (CK_SLOT_ID)session->slot_index;
    info->state = token->logged_in ? CKS_RO_USER_FUNCTIONS : CKS_RO_PUBLIC_SESSION;
    info->flags = session->flags;
    info->ulDeviceError = 0;
    return CKR_OK;
}

/* Decrypt every private key of the token with the PIN. */
static int unlock_keys(struct token *token, const char *pin) {
    int i;
    for (i = 0; i < token->object_count; i++) {
        struct object *object = &token->objects[i];
        char path[4500], stem[160];
        FILE *file;
        CK_ULONG k;
        if (object->object_class != CKO_PRIVATE_KEY) continue;
        for (k = 0; k < object->id_len && k < 64; k++) {
            snprintf(stem + 2 * k, 3, "%02x", object->id[k]);
        }
        stem[2 * k] = '\0';
        snprintf(path, sizeof(path), "%s/objects/%s.key", token->path, stem);
        file = fopen(path, "r");
        if (file == NULL) return 0;
        object->key = PEM_read_PrivateKey(file, NULL, NULL, (void *)pin);
        fclose(file);
        if (object->key == NULL || !EVP_PKEY_is_a(object->key, "SM2")) return 0;
    }
    return 1;
}

static CK_RV c_login(CK_SESSION_HANDLE handle, CK_USER_TYPE user_type, CK_UTF8CHAR_PTR pin,
                     CK_ULONG pin_len) {
    struct session *session;
    struct token *token;
    unsigned char derived[32];
    char text[65];
    unsigned long failures;
    CK_RV rv = session_token(handle, &session, &token);
    if (rv != CKR_OK) return rv;
    if (user_type != CKU_USER) return CKR_USER_TYPE_INVALID;
    if (token->logged_in) return CKR_USER_ALREADY_LOGGED_IN;
    if (pin == NULL) return CKR_ARGUMENTS_BAD;
    failures = pin_failures(token);
    if (failures >= token->max_tries) return CKR_PIN_LOCKED;
    if (pin_len < 4 || pin_len > 64) {
        write_pin_failures(token, failures + 1);
        return CKR_PIN_LEN_RANGE;
    }
    if (PKCS5_PBKDF2_HMAC((const char *)pin, (int)pin_len, token->salt, (int)token->salt_len,
                          PBKDF2_ROUNDS, EVP_sha256(), sizeof(derived), derived) != 1) {
        return CKR_FUNCTION_FAILED;
    }
    if (CRYPTO_memcmp(derived, token->pin_hash, sizeof(derived)) != 0) {
        if (!write_pin_failures(token, failures + 1)) return CKR_DEVICE_ERROR;
        return failures + 1 >= token->max_tries ? CKR_PIN_LOCKED : CKR_PIN_INCORRECT;
    }
    if (failures != 0 && !write_pin_failures(token, 0)) return CKR_DEVICE_ERROR;
    memcpy(text, pin, pin_len);
    text[pin_len] = '\0';
    if (!unlock_keys(token, text)) {
        OPENSSL_cleanse(text, sizeof(text));
        free_keys(token);
        return CKR_DEVICE_ERROR;
    }
    OPENSSL_cleanse(text, sizeof(text));
    token->logged_in = 1;
    return CKR_OK;
}

static CK_RV c_logout(CK_SESSION_HANDLE handle) {
    struct session *session;
    struct token *token;
    CK_RV rv = session_token(handle, &session, &token);
    if (rv != CKR_OK) return rv;
    if (!token->logged_in) return CKR_USER_NOT_LOGGED_IN;
    logout(token);
    return CKR_OK;
}

static int visible(const struct token *token, const struct object *object) {
    return object->object_class != CKO_PRIVATE_KEY || token->logged_in;
}

/* Copies one attribute value; CK_UNAVAILABLE_INFORMATION and 0 for an unknown type. */
static int attribute_value(const struct object *object, CK_ATTRIBUTE_TYPE type,
                           const void **value, CK_ULONG *length, void *scratch) {
    static const CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    static const CK_CERTIFICATE_TYPE x509_type = CKC_X_509;
    static const CK_KEY_TYPE ec_type = CKK_EC;
    int certificate = object->object_class == CKO_CERTIFICATE;
    switch (type) {
    case CKA_CLASS:
        memcpy(scratch, &object->object_class, sizeof(CK_OBJECT_CLASS));
        *value = scratch;
        *length = sizeof(CK_OBJECT_CLASS);
        return 1;
    case CKA_ID:
        *value = object->id;
        *length = object->id_len;
        return 1;
    case CKA_LABEL:
        *value = object->label;
        *length = strlen(object->label);
        return 1;
    case CKA_TOKEN:
        *value = &yes;
        *length = sizeof(CK_BBOOL);
        return 1;
    case CKA_PRIVATE:
    case CKA_MODIFIABLE:
        *value = certificate ? &no : (type == CKA_PRIVATE ? &yes : &no);
        *length = sizeof(CK_BBOOL);
        return 1;
    }
    if (certificate) {
        if (type == CKA_VALUE) {
            *value = object->value;
            *length = object->value_len;
            return 1;
        }
        if (type == CKA_CERTIFICATE_TYPE) {
            *value = &x509_type;
            *length = sizeof(x509_type);
            return 1;
        }
        return 0;
    }
    switch (type) {
    case CKA_KEY_TYPE:
        *value = &ec_type;
        *length = sizeof(ec_type);
        return 1;
    case CKA_EC_PARAMS:
        *value = SM2_CURVE_OID_DER;
        *length = sizeof(SM2_CURVE_OID_DER);
        return 1;
    case CKA_SIGN:
    case CKA_SENSITIVE:
    case CKA_ALWAYS_SENSITIVE:
    case CKA_NEVER_EXTRACTABLE:
        *value = &yes;
        *length = sizeof(CK_BBOOL);
        return 1;
    case CKA_EXTRACTABLE:
    case CKA_DECRYPT:
    case CKA_UNWRAP:
    case CKA_DERIVE:
    case CKA_SIGN_RECOVER:
    case CKA_ENCRYPT:
    case CKA_VERIFY:
    case CKA_WRAP:
        *value = &no;
        *length = sizeof(CK_BBOOL);
        return 1;
    case CKA_VALUE:
        return -1; /* sensitive */
    }
    return 0;
}

static CK_RV c_get_attribute_value(CK_SESSION_HANDLE handle, CK_OBJECT_HANDLE object_handle,
                                   CK_ATTRIBUTE_PTR template, CK_ULONG count) {
    struct session *session;
    struct token *token;
    struct object *object;
    CK_ULONG i;
    CK_RV result = CKR_OK;
    CK_RV rv = session_token(handle, &session, &token);
    if (rv != CKR_OK) return rv;
    if (object_handle == 0 || object_handle > (CK_OBJECT_HANDLE)token->object_count)
        return CKR_OBJECT_HANDLE_INVALID;
    object = &token->objects[object_handle - 1];
    if (!visible(token, object)) return CKR_OBJECT_HANDLE_INVALID;
    for (i = 0; i < count; i++) {
        const void *value = NULL;
        CK_ULONG length = 0;
        unsigned char scratch[sizeof(CK_ULONG)];
        int known = attribute_value(object, template[i].type, &value, &length, scratch);
        if (known <= 0) {
            template[i].ulValueLen = CK_UNAVAILABLE_INFORMATION;
            result = known < 0 ? CKR_ATTRIBUTE_SENSITIVE : CKR_ATTRIBUTE_TYPE_INVALID;
            continue;
        }
        if (template[i].pValue == NULL) {
            template[i].ulValueLen = length;
        } else if (template[i].ulValueLen < length) {
            template[i].ulValueLen = CK_UNAVAILABLE_INFORMATION;
            result = CKR_BUFFER_TOO_SMALL;
        } else {
            memcpy(template[i].pValue, value, length);
            template[i].ulValueLen = length;
        }
    }
    return result;
}

static int matches(const struct object *object, const CK_ATTRIBUTE *template, CK_ULONG count) {
    CK_ULONG i;
    for (i = 0; i < count; i++) {
        const void *value = NULL;
        CK_ULONG length = 0;
        unsigned char scratch[sizeof(CK_ULONG)];
        if (attribute_value(object, template[i].type, &value, &length, scratch) <= 0) return 0;
        if (length != template[i].ulValueLen) return 0;
        if (length > 0 && memcmp(value, template[i].pValue, length) != 0) return 0;
    }
    return 1;
}

static CK_RV c_find_objects_init(CK_SESSION_HANDLE handle, CK_ATTRIBUTE_PTR template,
                                 CK_ULONG count) {
    struct session *session;
    struct token *token;
    CK_ULONG i;
    CK_RV rv = session_token(handle, &session, &token);
    if (rv != CKR_OK) return rv;
    if (session->finding) return CKR_OPERATION_ACTIVE;
    session->template = calloc(count > 0 ? count : 1, sizeof(CK_ATTRIBUTE));
    if (session->template == NULL) return CKR_HOST_MEMORY;
    for (i = 0; i < count; i++) {
        session->template[i].type = template[i].type;
        session->template[i].ulValueLen = template[i].ulValueLen;
        session->template[i].pValue = malloc(template[i].ulValueLen + 1);
        if (session->template[i].pValue == NULL) return CKR_HOST_MEMORY;
        memcpy(session->template[i].pValue, template[i].pValue, template[i].ulValueLen);
    }
    session->template_count = count;
    session->find_next = 0;
    session->finding = 1;
    return CKR_OK;
}

static CK_RV c_find_objects(CK_SESSION_HANDLE handle, CK_OBJECT_HANDLE_PTR found,
                            CK_ULONG max_count, CK_ULONG_PTR count) {
    struct session *session;
    struct token *token;
    CK_RV rv = session_token(handle, &session, &token);
    if (rv != CKR_OK) return rv;
    if (!session->finding) return CKR_OPERATION_NOT_INITIALIZED;
    *count = 0;
    while (session->find_next < token->object_count && *count < max_count) {
        struct object *object = &token->objects[session->find_next++];
        if (visible(token, object) &&
            matches(object, session->template, session->template_count)) {
            found[(*count)++] = (CK_OBJECT_HANDLE)session->find_next;
        }
    }
    return CKR_OK;
}

static CK_RV c_find_objects_final(CK_SESSION_HANDLE handle) {
    struct session *session;
    struct token *token;
    CK_ULONG i;
    CK_RV rv = session_token(handle, &session, &token);
    if (rv != CKR_OK) return rv;
    if (!session->finding) return CKR_OPERATION_NOT_INITIALIZED;
    for (i = 0; i < session->template_count; i++) free(session->template[i].pValue);
    free(session->template);
    session->template = NULL;
    session->template_count = 0;
    session->finding = 0;
    return CKR_OK;
}

static CK_RV c_sign_init(CK_SESSION_HANDLE handle, CK_MECHANISM_PTR mechanism,
                         CK_OBJECT_HANDLE key) {
    struct session *session;
    struct token *token;
    struct object *object;
    CK_RV rv = session_token(handle, &session, &token);
    if (rv != CKR_OK) return rv;
    if (session->signing) return CKR_OPERATION_ACTIVE;
    if (mechanism == NULL) return CKR_ARGUMENTS_BAD;
    if (!token->logged_in) return CKR_USER_NOT_LOGGED_IN;
    if (key == 0 || key > (CK_OBJECT_HANDLE)token->object_count) return CKR_KEY_HANDLE_INVALID;
    object = &token->objects[key - 1];
    if (object->object_class != CKO_PRIVATE_KEY || object->key == NULL)
        return CKR_KEY_HANDLE_INVALID;
    if (mechanism->mechanism == CKM_VENDOR_SM2_SM3) {
        if (mechanism->ulParameterLen > sizeof(session->signer_id))
            return CKR_MECHANISM_PARAM_INVALID;
        if (mechanism->pParameter != NULL && mechanism->ulParameterLen > 0) {
            memcpy(session->signer_id, mechanism->pParameter, mechanism->ulParameterLen);
            session->signer_id_len = mechanism->ulParameterLen;
        } else {
            memcpy(session->signer_id, DEFAULT_SIGNER_ID, strlen(DEFAULT_SIGNER_ID));
            session->signer_id_len = strlen(DEFAULT_SIGNER_ID);
        }
    } else if (mechanism->mechanism == CKM_VENDOR_SM2) {
        if (mechanism->ulParameterLen != 0) return CKR_MECHANISM_PARAM_INVALID;
    } else {
        return CKR_MECHANISM_INVALID;
    }
    session->mechanism = mechanism->mechanism;
    session->key_index = (int)key - 1;
    session->signing = 1;
    return CKR_OK;
}

/* DER SEQUENCE {r, s} into r || s, 32 bytes each. */
static int der_to_raw(const unsigned char *der, size_t length, unsigned char *raw) {
    const unsigned char *cursor = der;
    const BIGNUM *r, *s;
    ECDSA_SIG *signature = d2i_ECDSA_SIG(NULL, &cursor, (long)length);
    int ok;
    if (signature == NULL) return 0;
    ECDSA_SIG_get0(signature, &r, &s);
    ok = BN_bn2binpad(r, raw, 32) == 32 && BN_bn2binpad(s, raw + 32, 32) == 32;
    ECDSA_SIG_free(signature);
    return ok;
}

static int sm2_sign(struct session *session, EVP_PKEY *key, const unsigned char *data,
                    size_t length, unsigned char *raw) {
    unsigned char der[128];
    size_t der_length = sizeof(der);
    int ok = 0;
    if (session->mechanism == CKM_VENDOR_SM2_SM3) {
        EVP_MD_CTX *message = EVP_MD_CTX_new();
        EVP_PKEY_CTX *context = EVP_PKEY_CTX_new(key, NULL);
        if (message != NULL && context != NULL &&
            EVP_PKEY_CTX_set1_id(context, session->signer_id, (int)session->signer_id_len) > 0) {
            EVP_MD_CTX_set_pkey_ctx(message, context);
            ok = EVP_DigestSignInit(message, NULL, EVP_sm3(), NULL, key) == 1 &&
                 EVP_DigestSign(message, der, &der_length, data, length) == 1;
        }
        EVP_MD_CTX_free(message);
        EVP_PKEY_CTX_free(context);
    } else {
        EVP_PKEY_CTX *context = EVP_PKEY_CTX_new(key, NULL);
        ok = context != NULL && EVP_PKEY_sign_init(context) == 1 &&
             EVP_PKEY_sign(context, der, &der_length, data, length) == 1;
        EVP_PKEY_CTX_free(context);
    }
    return ok && der_to_raw(der, der_length, raw);
}

static CK_RV c_sign(CK_SESSION_HANDLE handle, CK_BYTE_PTR data, CK_ULONG data_len,
                    CK_BYTE_PTR signature, CK_ULONG_PTR signature_len) {
    struct session *session;
    struct token *token;
    unsigned char raw[SM2_SIGNATURE_BYTES];
    CK_RV rv = session_token(handle, &session, &token);
    if (rv != CKR_OK) return rv;
    if (!session->signing) return CKR_OPERATION_NOT_INITIALIZED;
    if (signature_len == NULL) return CKR_ARGUMENTS_BAD;
    if (signature == NULL) {
        *signature_len = SM2_SIGNATURE_BYTES;
        return CKR_OK;
    }
    if (*signature_len < SM2_SIGNATURE_BYTES) {
        *signature_len = SM2_SIGNATURE_BYTES;
        return CKR_BUFFER_TOO_SMALL;
    }
    session->signing = 0;
    if (session->mechanism == CKM_VENDOR_SM2 && data_len != 32) return CKR_DATA_LEN_RANGE;
    if (!token->logged_in || token->objects[session->key_index].key == NULL)
        return CKR_USER_NOT_LOGGED_IN;
    if (!sm2_sign(session, token->objects[session->key_index].key, data, data_len, raw))
        return CKR_FUNCTION_FAILED;
    memcpy(signature, raw, SM2_SIGNATURE_BYTES);
    *signature_len = SM2_SIGNATURE_BYTES;
    return CKR_OK;
}

static CK_FUNCTION_LIST functions;

CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR list) {
    size_t i, count;
    CK_RV (**entries)(void);
    if (list == NULL) return CKR_ARGUMENTS_BAD;
    /* Every entry answers CKR_FUNCTION_NOT_SUPPORTED unless it is one of those below. */
    count = (sizeof(functions) - offsetof(CK_FUNCTION_LIST, C_Initialize)) / sizeof(void *);
    entries = (CK_RV(**)(void))(void *)&functions.C_Initialize;
    for (i = 0; i < count; i++) entries[i] = not_supported;
    functions.version.major = 2;
    functions.version.minor = 40;
    functions.C_Initialize = c_initialize;
    functions.C_Finalize = c_finalize;
    functions.C_GetInfo = c_get_info;
    functions.C_GetFunctionList = C_GetFunctionList;
    functions.C_GetSlotList = c_get_slot_list;
    functions.C_GetSlotInfo = c_get_slot_info;
    functions.C_GetTokenInfo = c_get_token_info;
    functions.C_GetMechanismList = c_get_mechanism_list;
    functions.C_GetMechanismInfo = c_get_mechanism_info;
    functions.C_OpenSession = c_open_session;
    functions.C_CloseSession = c_close_session;
    functions.C_CloseAllSessions = c_close_all_sessions;
    functions.C_GetSessionInfo = c_get_session_info;
    functions.C_Login = c_login;
    functions.C_Logout = c_logout;
    functions.C_GetAttributeValue = c_get_attribute_value;
    functions.C_FindObjectsInit = c_find_objects_init;
    functions.C_FindObjects = c_find_objects;
    functions.C_FindObjectsFinal = c_find_objects_final;
    functions.C_SignInit = c_sign_init;
    functions.C_Sign = c_sign;
    *list = &functions;
    return CKR_OK;
}
