/* fuzz_json.c: libFuzzer harness for the JSON decoder with the validation engine behind it
 * (fuzz_tree.h), and for the JSON string writer on arbitrary bytes. */
#include <stddef.h>
#include <stdint.h>

#include "fuzz_tree.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_one_body(json_parse, data, size);
    fuzz_roundtrip_string((const char *)data, size); /* the encoder on bytes nobody checked */
    return 0;
}
