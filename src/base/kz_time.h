/* kz_time.h — monotonic and wall clocks in integer units. */
#ifndef KZ_TIME_H
#define KZ_TIME_H
#include <stdint.h>
uint64_t kz_now_mono_ms(void);
uint64_t kz_now_mono_ns(void);
uint64_t kz_now_wall_ns(void);
#endif
