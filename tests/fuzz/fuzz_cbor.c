/* fuzz_cbor.c: libFuzzer harness for the CBOR decoder with the validation engine behind it
 * (fuzz_tree.h). */
#include <stddef.h>
#include <stdint.h>

#include "fuzz_tree.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_one_body(cbor_parse, data, size);
    return 0;
}
