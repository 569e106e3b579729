#include "core/error.h"

const char *catraca_strerror(int error)
{
    switch (error) {
    case 0:
        return "success";
#define CATRACA_ERROR_CASE(name, value, text)                                                      \
    case value:                                                                                    \
        return text;
        CATRACA_ERRNO_MAP(CATRACA_ERROR_CASE)
#undef CATRACA_ERROR_CASE
    default:
        return "unknown error";
    }
}
