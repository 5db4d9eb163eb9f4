/*
 * A PKCS#11 module that behaves like a USB key with a PIN retry counter, in front of SoftHSM.
 *
 * SoftHSM never locks a PIN (docs/agent.md); real USB keys do, after a few wrong PINs, and report
 * it through CK_TOKEN_INFO flags. This module forwards every call to a SoftHSM library
 * (PIN_LOCKOUT_TARGET: a copy of libsofthsm2.so, so it is a separate instance with its own state)
 * and adds the counter: after each refused user PIN the token reports USER_PIN_COUNT_LOW, one try
 * before the limit USER_PIN_FINAL_TRY, and at the limit (PIN_LOCKOUT_TRIES, default 3)
 * USER_PIN_LOCKED; a locked token answers C_Login with CKR_PIN_LOCKED. A right PIN resets the
 * counter, as on real keys. One counter for the whole module: tests use one token through it.
 *
 * Tests reach two extra functions through ctypes (the same loaded library): the number of user
 * C_Login calls that reached the token, and a reset that also sets the number of tries.
 *
 * Build: cc -shared -fPIC -I/usr/include/p11-kit-1 pin_lockout_module.c -o pin_lockout.so -ldl
 */
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

#include <p11-kit/pkcs11.h>

static CK_FUNCTION_LIST_PTR target = NULL;
static CK_FUNCTION_LIST shim;
static unsigned long failures = 0;
static unsigned long limit = 3;
static unsigned long login_calls = 0;

unsigned long pin_lockout_login_calls(void) { return login_calls; }

void pin_lockout_reset(unsigned long tries) {
    failures = 0;
    login_calls = 0;
    if (tries > 0) {
        limit = tries;
    }
}

static CK_RV shim_login(CK_SESSION_HANDLE session, CK_USER_TYPE user_type, CK_UTF8CHAR_PTR pin,
                        CK_ULONG pin_len) {
    CK_RV rv;
    if (user_type != CKU_USER) {
        return target->C_Login(session, user_type, pin, pin_len);
    }
    login_calls++;
    if (failures >= limit) {
        return CKR_PIN_LOCKED;
    }
    rv = target->C_Login(session, user_type, pin, pin_len);
    if (rv == CKR_PIN_INCORRECT || rv == CKR_PIN_LEN_RANGE) {
        failures++;
    } else if (rv == CKR_OK) {
        failures = 0;
    }
    return rv;
}

static CK_RV shim_get_token_info(CK_SLOT_ID slot, CK_TOKEN_INFO_PTR info) {
    CK_RV rv = target->C_GetTokenInfo(slot, info);
    if (rv != CKR_OK) {
        return rv;
    }
    info->flags &= ~(CKF_USER_PIN_COUNT_LOW | CKF_USER_PIN_FINAL_TRY | CKF_USER_PIN_LOCKED);
    if (failures >= limit) {
        info->flags |= CKF_USER_PIN_LOCKED;
    } else if (failures > 0) {
        info->flags |= CKF_USER_PIN_COUNT_LOW;
        if (failures + 1 == limit) {
            info->flags |= CKF_USER_PIN_FINAL_TRY;
        }
    }
    return CKR_OK;
}

CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR list) {
    const char *path = getenv("PIN_LOCKOUT_TARGET");
    const char *tries = getenv("PIN_LOCKOUT_TRIES");
    void *library;
    CK_RV (*get_function_list)(CK_FUNCTION_LIST_PTR_PTR);
    CK_RV rv;

    if (list == NULL) {
        return CKR_ARGUMENTS_BAD;
    }
    if (target == NULL) {
        if (path == NULL) {
            return CKR_GENERAL_ERROR;
        }
        library = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        if (library == NULL) {
            return CKR_GENERAL_ERROR;
        }
        get_function_list = (CK_RV(*)(CK_FUNCTION_LIST_PTR_PTR))dlsym(library, "C_GetFunctionList");
        if (get_function_list == NULL) {
            return CKR_GENERAL_ERROR;
        }
        rv = get_function_list(&target);
        if (rv != CKR_OK) {
            return rv;
        }
        if (tries != NULL && atol(tries) > 0) {
            limit = (unsigned long)atol(tries);
        }
        memcpy(&shim, target, sizeof(shim));
        shim.C_Login = shim_login;
        shim.C_GetTokenInfo = shim_get_token_info;
    }
    *list = &shim;
    return CKR_OK;
}
