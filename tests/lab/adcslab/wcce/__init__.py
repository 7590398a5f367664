"""Lab CA wire protocols: DCOM activation / OXID resolver / IRemUnknown2, MS-WCCE ICertRequestD(2), MS-ICPR."""
