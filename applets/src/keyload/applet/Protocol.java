package keyload.applet;

/**
 * The wire contract (docs/PROTOCOL.md, version 1) as named constants: the one place both applets take
 * command codes, status words, life-cycle values, lengths and record layouts from.
 */
public interface Protocol {

    byte PROTOCOL_VERSION = (byte) 0x01;

    // ---------------------------------------------------------------- classes and instructions
    byte CLA_ISO = (byte) 0x00;
    byte CLA_KEYLOAD = (byte) 0x80;

    byte INS_SELECT = (byte) 0xA4;
    byte INS_VERIFY = (byte) 0x20;
    byte INS_GET_INFO = (byte) 0x40;
    byte INS_LIST_KEYS = (byte) 0x42;
    byte INS_EXPORT_KEY = (byte) 0x4A;
    byte INS_IMPORT_KEY = (byte) 0x4C;
    byte INS_SET_TRANSPORT_KEY = (byte) 0x50;
    byte INS_SET_SERIAL = (byte) 0x52;
    byte INS_PUT_APP_KEY = (byte) 0x54;
    byte INS_DEFINE_SLOT = (byte) 0x56;
    byte INS_SET_RETRY_LIMIT = (byte) 0x58;
    byte INS_SET_PIN = (byte) 0x5A;
    byte INS_LOCK = (byte) 0x5E;
    byte INS_GET_CHALLENGE = (byte) 0x84;
    byte INS_INTERNAL_AUTHENTICATE = (byte) 0x88;

    byte P1_SELECT_BY_NAME = (byte) 0x04;
    byte P2_OPERATOR_PIN = (byte) 0x81;

    // ---------------------------------------------------------------- status words (PROTOCOL.md §4.4)
    short SW_WRONG_LENGTH = (short) 0x6700;
    /** Low nibble: tries left. */
    short SW_VERIFICATION_FAILED = (short) 0x63C0;
    short SW_SECURITY_STATUS_NOT_SATISFIED = (short) 0x6982;
    short SW_BLOCKED = (short) 0x6983;
    short SW_CONDITIONS_NOT_SATISFIED = (short) 0x6985;
    short SW_COMMAND_NOT_ALLOWED = (short) 0x6986;
    short SW_INCORRECT_DATA = (short) 0x6A80;
    /** Not in PROTOCOL.md §4.4: a SELECT for an AID no applet has, passed on to us by the runtime. */
    short SW_APPLICATION_NOT_FOUND = (short) 0x6A82;
    short SW_NOT_ENOUGH_MEMORY = (short) 0x6A84;
    short SW_INCORRECT_P1P2 = (short) 0x6A86;
    short SW_REFERENCE_NOT_FOUND = (short) 0x6A88;
    short SW_INS_NOT_SUPPORTED = (short) 0x6D00;
    short SW_CLA_NOT_SUPPORTED = (short) 0x6E00;

    // ---------------------------------------------------------------- roles and life cycle
    byte ROLE_AS = (byte) 0x01;
    byte ROLE_EI = (byte) 0x02;

    byte STATE_SETUP = (byte) 0x01;
    byte STATE_OPERATIONAL = (byte) 0x02;
    byte STATE_BLOCKED = (byte) 0xFF;

    // ---------------------------------------------------------------- keys and references
    short AES_128_BYTES = 16;
    short AES_192_BYTES = 24;
    short AES_256_BYTES = 32;
    short MAX_KEY_BYTES = AES_256_BYTES;
    short BLOCK_BYTES = 16;

    byte USAGE_AUTHENTICATE = (byte) 0x01;
    byte USAGE_MAC = (byte) 0x02;
    byte USAGE_ENCRYPT = (byte) 0x04;

    /** Key flags (AS) and slot flags (EI) both use bit 0 only. */
    byte FLAG_DIVERSIFIED = (byte) 0x01;
    byte FLAG_ACCEPTS_IMPORT = (byte) 0x01;
    byte FLAGS_DEFINED = (byte) 0x01;

    byte REF_NONE = (byte) 0x00;
    byte REF_MAX = (byte) 0x7F;
    short MAX_ENTRIES = 16;
    short EXPORT_UNLIMITED = (short) 0xFFFF;

    short SN_MIN_BYTES = 8;
    short SN_MAX_BYTES = 16;
    short PIN_MIN_BYTES = 4;
    short PIN_MAX_BYTES = 16;
    byte PIN_TRY_LIMIT = 3;
    byte RETRY_LIMIT_DEFAULT = 10;
    byte RETRY_LIMIT_MAX = 15;
    short CHALLENGE_BYTES = 16;
    short MAX_AUTHENTICATE_BYTES = 64;

    // ---------------------------------------------------------------- derivation labels (PROTOCOL.md §2)
    byte LABEL_T1 = (byte) 0x10;
    byte LABEL_K_ENC = (byte) 0x11;
    byte LABEL_K_MAC = (byte) 0x12;
    byte LABEL_UNIT = (byte) 0x20;

    short KCV_BYTES = 3;
    short SAS_BYTES = 8;
    short CAS_BYTES = 16;

    // ---------------------------------------------------------------- key block (PROTOCOL.md §3)
    byte BLOCK_FORMAT = (byte) 0x01;
    short HEADER_BYTES = 8;
    short HDR_FORMAT = 0;
    short HDR_REF2 = 1;
    short HDR_KEY_LENGTH = 2;
    short HDR_USAGE = 3;
    short HDR_VERSION = 4;
    short HDR_FLAGS = 6;
    short HDR_REF1 = 7;

    // ---------------------------------------------------------------- INFO (SELECT, GET INFO)
    short INFO_VERSION = 0;
    short INFO_ROLE = 1;
    short INFO_STATE = 2;
    short INFO_T_LENGTH = 3;
    short INFO_T_KCV = 4;
    short INFO_TRIES_LEFT = 7;
    short INFO_TRY_LIMIT = 8;
    short INFO_ENTRIES = 9;
    short INFO_SN_LENGTH = 10;
    short INFO_SN = 11;

    // ---------------------------------------------------------------- LIST KEYS entry
    short ENTRY_REF = 0;
    short ENTRY_STATE = 1;
    short ENTRY_KEY_LENGTH = 2;
    short ENTRY_USAGE = 3;
    short ENTRY_VERSION = 4;
    short ENTRY_FLAGS = 6;
    short ENTRY_KCV = 7;
    short ENTRY_COUNT = 10;
    short ENTRY_LIMIT = 12;
    short ENTRY_BYTES = 14;

    byte ENTRY_EMPTY = (byte) 0x00;
    byte ENTRY_LOADED = (byte) 0x01;
}
