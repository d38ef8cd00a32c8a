/* kz_array.c — growable arrays (kz_array.h). */
#include "base/kz_array.h"

#include <stdlib.h>

void *kz_array_grow(void *v, size_t esz, size_t cap, size_t need, size_t first, size_t max, size_t *new_cap)
{
	if (need > max || esz == 0)
		return NULL;
	size_t nc = cap ? cap : (first ? first : 1);
	while (nc < need)
		nc = nc > max / 2 ? max : nc * 2;
	if (nc > max)
		nc = max;
	if (nc > SIZE_MAX / esz)
		return NULL;
	void *nv = realloc(v, nc * esz);
	if (!nv)
		return NULL;
	*new_cap = nc;
	return nv;
}
